"""One node per module: each is an async function that returns only the state keys it changes."""
