"""generate: the generator writes the files for the contract, streamed straight to disk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.errors import SpeedRunError
from speedrun.loop.codegen import generate_and_write, read_context_files
from speedrun.nodes.common import progress, run_settings
from speedrun.state.turbo import TurboState


async def generate(state: TurboState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write the first pass of every file named by the contract."""
    settings = run_settings(runtime, state.roles)
    out = Path(state.output_dir)
    # Reading files (and resolving the root) blocks: off the event loop, which Studio (langgraph dev) enforces.
    context = await asyncio.to_thread(lambda: read_context_files(state.context_files, out, [out.resolve()]))
    progress(runtime, "generate", "generator is writing files")

    async def on_file(outcome: Any) -> None:
        action = getattr(outcome, "action", "refused")
        progress(runtime, "generate", f"{action} {outcome.path}", path=outcome.path, action=action)

    if state.spec is None:  # contract_write always runs first
        raise SpeedRunError("generate ran before a contract was written")
    result = await generate_and_write(
        settings,
        prompts.GENERATE_FROM_CONTRACT.format(contract=state.spec.render()),
        out,
        context=context,
        on_file=on_file,
        allow_paths=state.allow_paths,
    )
    return {
        "files": result.report.files_written,
        "file_errors": result.report.errors,
        "ledger": result.entries,
        "warnings": result.warnings,
    }
