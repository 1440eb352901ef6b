"""contract_write: the planner turns a task into a four-section Contract, or a given contract is checked."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.state.turbo import Contract, TurboState


async def contract_write(state: TurboState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Produce `spec`: parse the caller's contract (warning on missing sections) or ask the planner for one."""
    if state.spec is not None:
        return {}
    if state.contract and state.contract.strip():
        spec, missing = Contract.parse(state.contract)
        warnings = [f"contract has no {name} section; the generator will have to guess it" for name in missing]
        progress(runtime, "contract_write", "contract given" + (f"; missing {', '.join(missing)}" if missing else ""))
        return {"spec": spec, "warnings": warnings}
    settings = run_settings(runtime, state.roles)
    progress(runtime, "contract_write", "planner is writing the contract")
    messages = [
        ("system", prompts.CONTRACT_SYSTEM),
        ("user", prompts.CONTRACT_USER.format(task=state.task, test_command=state.test_command)),
    ]
    spec, entries = await structured(settings, "planner", Contract, messages)
    progress(runtime, "contract_write", "contract written")
    return {"spec": spec, "ledger": entries}
