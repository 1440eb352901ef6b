"""Source excerpts for prompts: line-numbered files under a character budget (the fixer's and the judge's)."""

from __future__ import annotations

from collections.abc import Iterable


def within_budget(blocks: Iterable[tuple[str, str]], budget: int, empty: str) -> str:
    """'--- path' blocks of (path, line-numbered body), in order, while they fit in `budget` characters.

    A block that does not fit is named as omitted rather than shown, so the reader knows it exists; later, smaller
    blocks still get their turn. `empty` is returned when there is nothing to show.
    """
    parts: list[str] = []
    used = 0
    for path, body in blocks:
        block = f"--- {path}\n{body}\n"
        if used + len(block) > budget:
            parts.append(f"--- {path} (omitted: size bound reached)\n")
            continue
        parts.append(block)
        used += len(block)
    return "".join(parts) or empty
