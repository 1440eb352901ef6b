"""State and records of the turbo workflow: contract → generate → run tests → surgical fix → report."""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from speedrun.state.records import CompactModel, FileError, LedgerEntry, TestReport, WrittenFile, one_line

SECTIONS = ("DATA CONTRACT", "API CONTRACT", "ALGORITHM", "RULES")
#: A parallel runner's name (runner-N, variant-<slug>), as TurboInput.runner takes it.
RUNNER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")


class Contract(BaseModel):
    """The four-section contract the generator works from."""

    data_contract: str = Field(description="Data shapes: types, fields, invariants, units.")
    api_contract: str = Field(description="Public functions/classes/endpoints with exact signatures and errors.")
    algorithm: str = Field(description="How it works, step by step, including edge cases.")
    rules: str = Field(description="Constraints: files to write, language, libraries allowed, test expectations.")

    def render(self) -> str:
        """The contract as the sectioned text the generator sees."""
        return "\n\n".join(f"{name}:\n{getattr(self, key).strip()}" for name, key in zip(SECTIONS, _KEYS, strict=True))

    @classmethod
    def parse(cls, text: str) -> tuple[Contract, list[str]]:
        """Split sectioned text into a Contract; returns it with the names of missing sections."""
        pattern = re.compile(r"^[ \t#*]*(" + "|".join(SECTIONS) + r")[ \t*]*:?[ \t]*", re.I | re.M)
        found: dict[str, str] = {}
        matches = list(pattern.finditer(text))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            found[m.group(1).upper()] = (found.get(m.group(1).upper(), "") + text[m.end() : end]).strip()
        missing = [name for name in SECTIONS if not found.get(name)]
        values = {key: found.get(name, "") for name, key in zip(SECTIONS, _KEYS, strict=True)}
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


# What a caller's context gets of a finished run (about 1 KB plus a line per file); the report file has the rest.
SHOWN_FAILURES = 3
SHOWN_EDITS = 2
SHOWN_WARNINGS = 2
LINE = 70  # characters of one message line
FAILURE_LINE = 90  # characters of a failing test's line, its id included
DIAGNOSIS = 50


class FileLine(CompactModel):
    """A written file in a compact result."""

    path: str
    lines: int
    action: str


class TestsLine(CompactModel):
    """A test report in a compact result."""

    __test__ = False
    passed: int = 0
    failed: int = 0
    errors: int = 0
    exit_code: int | None = Field(None, description="Shown when the command failed without a failing test.")
    timed_out: bool = False
    failures: list[str] = Field(
        default_factory=list,
        description=f"At most {SHOWN_FAILURES}, each 'test id: first line of its message', trimmed.",
    )

    @classmethod
    def of(cls, tests: TestReport) -> TestsLine:
        """The compact line of a test report: counts, the exit code when nothing failed, a few failures."""
        return cls(
            passed=tests.passed,
            failed=tests.failed,
            errors=tests.errors,
            timed_out=tests.timed_out,
            exit_code=tests.exit_code if not (tests.ok or tests.failed or tests.errors) else None,
            failures=[
                one_line(f"{f.name}: {one_line(f.message, FAILURE_LINE)}", FAILURE_LINE)
                for f in tests.failures[:SHOWN_FAILURES]
            ],
        )


class EditLine(CompactModel):
    """An edit that did not apply, in a compact result."""

    path: str
    status: str
    message: str = ""


class CycleLine(CompactModel):
    """The last fix cycle in a compact result: its applied edits counted, the others shown."""

    cycle: int
    source: str
    diagnosis: str = ""
    applied: int = 0
    edits: list[EditLine] = Field(default_factory=list, description=f"Edits that did not apply, at most {SHOWN_EDITS}.")

    @classmethod
    def of(cls, cycle: FixCycle) -> CycleLine:
        """The compact line of a fix cycle: its applied edits counted, the ones that did not apply shown."""
        missed = [e for e in cycle.edits if e.status != "applied"]
        return cls(
            cycle=cycle.cycle,
            source=cycle.source,
            diagnosis=one_line(cycle.diagnosis, DIAGNOSIS),
            applied=len(cycle.edits) - len(missed),
            edits=[
                EditLine(path=e.path, status=e.status, message=one_line(e.message, LINE)) for e in missed[:SHOWN_EDITS]
            ],
        )


class CallsLine(BaseModel):
    """Model calls of a run: count, tokens (prompt + completion) and ms, all roles together."""

    calls: int
    tokens: int
    ms: int


class TurboSummary(CompactModel):
    """The compact outcome of a turbo run, for a caller's context: at most about 1 KB plus a line per file."""

    status: str
    files: list[FileLine] = Field(default_factory=list)
    file_errors: list[FileError] = Field(default_factory=list, description=f"At most {SHOWN_FAILURES}, trimmed.")
    tests: TestsLine | None = None
    fix_cycles: int = Field(0, description="Fix cycles run; `last_cycle` shows the last one.")
    last_cycle: CycleLine | None = None
    llm: CallsLine | None = None
    caller_tokens_saved: int = 0
    warnings: list[str] = Field(default_factory=list)
    omitted: str | None = Field(None, description="What was left out here; the report file (report_path) has it.")


class TurboResult(BaseModel):
    """The full outcome of a turbo run: metadata only, never file contents. `summary()` is what a caller sees."""

    run_id: str | None = None
    status: Literal["passed", "failed", "stopped"]
    output_dir: str
    files: list[WrittenFile] = Field(default_factory=list)
    file_errors: list[FileError] = Field(default_factory=list)
    tests: TestReport | None = None
    cycles: list[FixCycle] = Field(default_factory=list)
    ledger: dict[str, RoleUsage] = Field(default_factory=dict, description="Calls, tokens, ms per role.")
    caller_tokens_saved: int = Field(
        0, description="Estimate: tokens the models generated minus tokens returned to the caller."
    )
    warnings: list[str] = Field(default_factory=list)
    report_path: str | None = Field(None, description="JSON file holding this full report.")

    def summary(self) -> TurboSummary:
        """The compact form a caller's context gets: a few failures, the last cycle, one trimmed line per message."""
        tests = self.tests
        failures = tests.failures if tests else []
        last = self.cycles[-1] if self.cycles else None
        missed = [e for e in last.edits if e.status != "applied"] if last else []
        left_out = [
            f"{n} {what}"
            for n, what in (
                (len(failures) - SHOWN_FAILURES, "failing tests"),
                (len(self.cycles) - 1, "fix cycles"),
                (len(missed) - SHOWN_EDITS, "edits"),
                (len(self.file_errors) - SHOWN_FAILURES, "refused files"),
                (len(self.warnings) - SHOWN_WARNINGS, "warnings"),
            )
            if n > 0
        ]
        calls = [u for u in self.ledger.values()]
        return TurboSummary(
            status=self.status,
            files=[FileLine(path=f.path, lines=f.lines, action=f.action) for f in self.files],
            file_errors=[
                FileError(path=one_line(e.path, LINE), error=one_line(e.error, LINE))
                for e in self.file_errors[:SHOWN_FAILURES]
            ],
            tests=None if tests is None else TestsLine.of(tests),
            fix_cycles=len(self.cycles),
            last_cycle=None if last is None else CycleLine.of(last),
            llm=CallsLine(
                calls=sum(u.calls for u in calls),
                ms=sum(u.duration_ms for u in calls),
                tokens=sum(u.prompt_tokens + u.completion_tokens for u in calls),
            )
            if calls
            else None,
            caller_tokens_saved=self.caller_tokens_saved,
            warnings=[one_line(w, LINE) for w in self.warnings[:SHOWN_WARNINGS]],
            omitted=", ".join(left_out) or None,
        )


class TurboInput(BaseModel):
    """What a turbo run needs. Give `task` (plain words) or `contract` (sectioned text)."""

    task: str | None = Field(None, description="The job in plain words; the planner writes the contract.")
    contract: str | None = Field(None, description="DATA CONTRACT / API CONTRACT / ALGORITHM / RULES text.")
    output_dir: str = Field(description="Workspace to write files into and run tests in.")
    test_command: str = Field("pytest -q", description="Shell command that runs the tests in output_dir.")
    max_fix_cycles: int = Field(3, ge=0, le=20, description="Surgical fix rounds before giving up.")
    context_files: list[str] = Field(
        default_factory=list, description="Existing files (relative to output_dir) shown to the generator."
    )
    roles: dict[str, str] = Field(
        default_factory=dict, description="Per-role overrides, e.g. {'fixer': 'client', 'generator': 'groq'}."
    )
    test_timeout_s: float = Field(300, gt=0, description="Wall-clock limit for one test run.")
    allow_paths: list[str] = Field(
        default_factory=list,
        description="Protected paths (e.g. .github/workflows/ci.yml) the generator may write anyway.",
    )
    test_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables added to the tests' scrubbed environment (e.g. SPEEDRUN_RUNNER, SPEEDRUN_PORT_BASE "
        "for parallel runners); a name that looks like a secret is refused.",
    )
    runner: str | None = Field(
        None,
        description="Set when turbo runs as a parallel runner (runner-N, variant-<slug>): its full report goes to "
        "runs/<run_id>/<runner>/report.json, so the runners of one run do not overwrite each other's.",
    )

    @field_validator("test_command")
    @classmethod
    def _test_command_runs_something(cls, value: str) -> str:
        # A blank command "passes" without running a single test.
        if not value.strip():
            raise ValueError("test_command is empty; give the command that runs the tests, e.g. 'pytest -q'")
        return value

    @field_validator("runner")
    @classmethod
    def _runner_names_a_folder(cls, value: str | None) -> str | None:
        # It becomes a folder name under SPEEDRUN_HOME: nothing that could climb out of the run's folder.
        if value is not None and not RUNNER_NAME.match(value):
            raise ValueError(f"runner {value[:60]!r} is not a runner name; use e.g. 'runner-1' or 'variant-sqlite'")
        return value

    @model_validator(mode="after")
    def _task_or_contract(self) -> TurboInput:
        if not ((self.task and self.task.strip()) or (self.contract and self.contract.strip())):
            raise ValueError(
                "give either `task` (plain words) or `contract` (DATA CONTRACT / API CONTRACT / ALGORITHM / RULES text)"
            )
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
    failures: list[dict[str, Any]] = Field(description="At most 3 failing tests, each {name, message} in one line.")
    more_failures: int = Field(0, description="Failing tests not listed; run the tests to see them all.")
    edits_not_applied: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Your edits of the previous cycle that did not apply: {path, status, "
        "message}. Nothing of them was written.",
    )
    files: list[str]
    how_to_resume: str = (
        "Fix the files yourself, then resume with action 'retest'; or send 'edits' (search/replace); or 'stop'."
    )
