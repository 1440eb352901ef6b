"""State and records of the turbo workflow: contract → generate → run tests → surgical fix → report."""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from speedrun.state.records import FileError, LedgerEntry, TestReport, WrittenFile

SECTIONS = ("DATA CONTRACT", "API CONTRACT", "ALGORITHM", "RULES")


class Contract(BaseModel):
    """The four-section contract the generator works from."""

    data_contract: str = Field(description="Data shapes: types, fields, invariants, units.")
    api_contract: str = Field(description="Public functions/classes/endpoints with exact signatures and errors.")
    algorithm: str = Field(description="How it works, step by step, including edge cases.")
    rules: str = Field(description="Constraints: files to write, language, libraries allowed, test expectations.")

    def render(self) -> str:
        """The contract as the sectioned text the generator sees."""
        return "\n\n".join(f"{name}:\n{getattr(self, key).strip()}" for name, key in zip(SECTIONS, _KEYS))

    @classmethod
    def parse(cls, text: str) -> tuple["Contract", list[str]]:
        """Split sectioned text into a Contract; returns it with the names of missing sections."""
        pattern = re.compile(r"^[ \t#*]*(" + "|".join(SECTIONS) + r")[ \t*]*:?[ \t]*", re.I | re.M)
        found: dict[str, str] = {}
        matches = list(pattern.finditer(text))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            found[m.group(1).upper()] = (found.get(m.group(1).upper(), "") + text[m.end():end]).strip()
        missing = [name for name in SECTIONS if not found.get(name)]
        values = {key: found.get(name, "") for name, key in zip(SECTIONS, _KEYS)}
        if not matches:  # free text: keep it whole so nothing the caller wrote is lost
            values["rules"] = text.strip()
        return cls(**values), missing


_KEYS = ("data_contract", "api_contract", "algorithm", "rules")


class RoleUsage(BaseModel):
    """Calls, tokens and time spent by one role in a run."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int = 0


def ledger_by_role(entries: list[LedgerEntry]) -> dict[str, RoleUsage]:
    """Summarize a ledger per role."""
    out: dict[str, RoleUsage] = {}
    for e in entries:
        u = out.setdefault(e.role, RoleUsage())
        u.calls += 1
        u.prompt_tokens += e.prompt_tokens
        u.completion_tokens += e.completion_tokens
        u.duration_ms += e.duration_ms
    return out


class AppliedEdit(BaseModel):
    """One edit of a fix cycle and what happened to it (search/replace text omitted to stay compact)."""

    path: str
    status: str = Field(description="applied, not_found, ambiguous, refused or error.")
    message: str = ""
    lines_removed: int = 0
    lines_added: int = 0


class FixCycle(BaseModel):
    """One round of surgical fixing."""

    cycle: int = Field(description="1-based cycle number.")
    source: Literal["model", "client"] = Field(description="Who proposed the edits.")
    diagnosis: str = ""
    failures_before: int = Field(0, description="Failing tests when the cycle started.")
    edits: list[AppliedEdit] = Field(default_factory=list)


class TurboResult(BaseModel):
    """The compact outcome of a turbo run: metadata only, never file contents."""

    run_id: str | None = None
    status: Literal["passed", "failed", "stopped"]
    output_dir: str
    files: list[WrittenFile] = Field(default_factory=list)
    file_errors: list[FileError] = Field(default_factory=list)
    tests: TestReport | None = None
    cycles: list[FixCycle] = Field(default_factory=list)
    ledger: dict[str, RoleUsage] = Field(default_factory=dict, description="Calls, tokens, ms per role.")
    caller_tokens_saved: int = Field(0, description="Estimate: tokens the models generated minus tokens "
                                                    "returned to the caller.")
    warnings: list[str] = Field(default_factory=list)


class TurboInput(BaseModel):
    """What a turbo run needs. Give `task` (plain words) or `contract` (sectioned text)."""

    task: str | None = Field(None, description="The job in plain words; the planner writes the contract.")
    contract: str | None = Field(None, description="DATA CONTRACT / API CONTRACT / ALGORITHM / RULES text.")
    output_dir: str = Field(description="Workspace to write files into and run tests in.")
    test_command: str = Field("pytest -q", description="Shell command that runs the tests in output_dir.")
    max_fix_cycles: int = Field(3, ge=0, le=20, description="Surgical fix rounds before giving up.")
    context_files: list[str] = Field(default_factory=list, description="Existing files (relative to output_dir) "
                                                                       "shown to the generator.")
    roles: dict[str, str] = Field(default_factory=dict, description="Per-role overrides, e.g. "
                                                                    "{'fixer': 'client', 'generator': 'groq'}.")
    test_timeout_s: float = Field(300, gt=0, description="Wall-clock limit for one test run.")

    @model_validator(mode="after")
    def _task_or_contract(self) -> "TurboInput":
        if not ((self.task and self.task.strip()) or (self.contract and self.contract.strip())):
            raise ValueError("give either `task` (plain words) or `contract` (DATA CONTRACT / API CONTRACT / "
                             "ALGORITHM / RULES text)")
        return self


class TurboState(TurboInput):
    """Everything the turbo graph tracks between nodes."""

    spec: Contract | None = Field(None, description="The contract in use.")
    warnings: Annotated[list[str], operator.add] = Field(default_factory=list)
    files: list[WrittenFile] = Field(default_factory=list, description="Files written by generate (latest state).")
    file_errors: list[FileError] = Field(default_factory=list)
    tests: TestReport | None = Field(None, description="The latest test report.")
    cycles: Annotated[list[FixCycle], operator.add] = Field(default_factory=list)
    ledger: Annotated[list[LedgerEntry], operator.add] = Field(default_factory=list)
    stopped: bool = Field(False, description="The caller chose to stop during a client fix.")
    result: TurboResult | None = None


class TurboOutput(BaseModel):
    """What a turbo run returns."""

    result: TurboResult | None = None


class ClientFixRequest(BaseModel):
    """Interrupt payload when the caller is the fixer: what failed and which files exist."""

    kind: Literal["fix_needed"] = "fix_needed"
    cycle: int
    output_dir: str
    failures: list[dict[str, Any]]
    files: list[str]
    how_to_resume: str = ("Fix the files yourself, then resume with action 'retest'; or send 'edits' "
                          "(search/replace); or 'stop'.")
