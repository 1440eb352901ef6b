"""Counts in words as people read them: "1 file", "2 files"; the one owner of plural forms in output."""

from __future__ import annotations

IRREGULAR = {"was": "were", "is": "are", "has": "have", "this": "these"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` and `noun`, the noun in its plural form unless count is exactly 1: plural(2, "file") -> "2 files"."""
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = IRREGULAR.get(noun) or (noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s")
    return f"{count} {many}"
