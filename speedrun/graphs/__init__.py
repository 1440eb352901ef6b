"""Compiled LangGraph graphs; each module exports `builder` and `graph` (turbo, judge)."""
