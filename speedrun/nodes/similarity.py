"""similarity: pairwise similarity of the runners' implementations and plans; near-duplicates are flagged."""

from __future__ import annotations

import asyncio
import difflib
import itertools
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.nodes.common import progress
from speedrun.nodes.gate import by_index
from speedrun.state.parallel import SIMILARITY_FLAG, AnyPercentState, RunnerResult, ShowdownState, SimilarityFlag

TEXT_BUDGET = 200_000  # characters of one implementation compared; difflib is quadratic in the worst case
FILE_BYTES = 500_000  # a changed file larger than this is data, not code: left out


def implementation_text(root: Path, files: list[str], skip_prefix: str) -> str:
    """The changed files of one implementation, each under its path, in path order. Blocking (reads files)."""
    parts: list[str] = []
    size = 0
    for rel in sorted(files):
        if rel.startswith(skip_prefix):  # the plans differ on purpose; they are compared on their own
            continue
        path = root / rel
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parts.append(f"--- {rel}\n{text}")
        size += len(parts[-1])
        if size >= TEXT_BUDGET:
            break
    return "\n".join(parts)[:TEXT_BUDGET]


def ratio(first: str, second: str) -> float:
    """difflib's similarity 0-1 of two texts (line-based, so it stays fast on whole files)."""
    if not first and not second:
        return 1.0
    matcher = difflib.SequenceMatcher(None, first.splitlines(), second.splitlines(), autojunk=False)
    return matcher.ratio()


def near_duplicates(texts: dict[str, str], threshold: float = SIMILARITY_FLAG) -> list[SimilarityFlag]:
    """Every pair whose similarity is at least `threshold`, in name order. Blocking (CPU)."""
    flags: list[SimilarityFlag] = []
    for (a, text_a), (b, text_b) in itertools.combinations(texts.items(), 2):
        value = ratio(text_a, text_b)
        if value >= threshold:
            flags.append(SimilarityFlag(first=a, second=b, ratio=round(value, 3)))
    return flags


def _texts(results: list[RunnerResult], skip_prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """Implementations (changed files) and plans of the runners that produced something."""
    code: dict[str, str] = {}
    plans: dict[str, str] = {}
    for r in results:
        if r.status == "error" or not r.files_changed:
            continue
        root = Path(r.worktree)
        code[r.name] = implementation_text(root, r.files_changed, skip_prefix)
        try:
            plans[r.name] = (root / r.plan_path).read_text(encoding="utf-8", errors="replace")[:TEXT_BUDGET]
        except OSError:
            pass
    return code, plans


async def similarity(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Flag implementation pairs >= SIMILARITY_FLAG alike; warn about plans that came out near-identical."""
    skip = f"docs/plans/{state.feature}/"
    code, plans = await asyncio.to_thread(_texts, by_index(state.results), skip)
    flags = await asyncio.to_thread(near_duplicates, code)
    same_plans = await asyncio.to_thread(near_duplicates, plans)
    warnings = [
        f"the plans of {f.first} and {f.second} are {f.ratio:.0%} alike: the runners did not really differ"
        for f in same_plans
    ]
    shown = ", ".join(f"{f.first}~{f.second} {f.ratio:.0%}" for f in flags) or "no near-duplicates"
    progress(runtime, "similarity", f"compared {len(code)} implementations: {shown}")
    return {"similar": flags, "warnings": warnings}
