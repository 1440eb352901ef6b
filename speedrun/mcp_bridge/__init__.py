"""The MCP server exposing speed-run's tools and graphs."""
