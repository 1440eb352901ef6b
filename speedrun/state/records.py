"""Records that cross a boundary (graph state, MCP results, reports): pydantic models with documented fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

FileAction = Literal["created", "modified", "unchanged"]


def one_line(text: str | None, limit: int = 160) -> str:
    """The first non-blank line of `text`, cut to `limit` characters: how a long message is shown to a caller."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def tests_line(passed: int, failed: int, errors: int, timed_out: bool = False) -> str:
    """A test run in one line, 'N passed, M failed, K errors' (+ ' (timed out)'): how every report and prompt
    shows one."""
    from speedrun.words import plural

    return f"{passed} passed, {failed} failed, {plural(errors, 'error')}" + (" (timed out)" if timed_out else "")


class CompactModel(BaseModel):
    """A record for a caller's context window: fields that are None, empty or False are left out when dumped."""

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if not (v is None or v is False or v in ("", [], {}))}


class GeneratedFile(BaseModel):
    """One file parsed out of a model reply, before it is written."""

    path: str = Field(description="Relative path as the model wrote it.")
    content: str = Field(description="Exact file content, ending with a newline.")


class WrittenFile(BaseModel):
    """Metadata about a file that reached disk (never its content)."""

    path: str = Field(description="Normalized path relative to the output directory.")
    filename: str = Field(description="Last path component.")
    lines: int = Field(description="Number of lines in the written file.")
    action: FileAction = Field(description="created, modified (old copy backed up) or unchanged.")
    backup: str | None = Field(None, description="Where the previous version was saved, for modified files.")


class FileError(BaseModel):
    """A file that was refused or could not be written, and why."""

    path: str = Field(description="The path as the model gave it (may be unsafe; shown for diagnosis).")
    error: str = Field(description="Why it was refused, in words a user can act on.")


class WriteReport(BaseModel):
    """Everything a write pass did."""

    files_written: list[WrittenFile] = Field(default_factory=list)
    errors: list[FileError] = Field(default_factory=list)


class LedgerEntry(BaseModel):
    """One model call, as recorded by the gateway."""

    role: str = Field(description="generator, planner, fixer, reviewer or judge.")
    provider: str = Field(description="Provider preset that served the call.")
    model: str = Field(description="Model name sent to the provider.")
    duration_ms: int = Field(description="Wall-clock time of the call, queueing on the rate budget excluded.")
    queued_ms: int = Field(0, description="Time spent waiting for the shared rate budget.")
    prompt_tokens: int = Field(0, description="Input tokens as reported by the provider (estimated if absent).")
    completion_tokens: int = Field(0, description="Output tokens as reported by the provider (estimated if absent).")
    finish_reason: str | None = Field(None, description="stop, length, tool_calls, ... as reported.")
    fallback: bool = Field(False, description="True when the role's fallback provider served this call.")


class Usage(BaseModel):
    """Token totals over one or more calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, entries: list[LedgerEntry]) -> Usage:
        """Sum a ledger."""
        p = sum(e.prompt_tokens for e in entries)
        c = sum(e.completion_tokens for e in entries)
        return cls(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


class TestFailure(BaseModel):
    """One failing test and what it said."""

    __test__ = False  # not a pytest class
    name: str = Field(description="Test id, e.g. tests/test_x.py::test_y.")
    message: str = Field(description="Failure message, trimmed.")
    file: str | None = Field(None, description="File the failure points at, when known.")
    line: int | None = Field(None, description="Line the failure points at, when known.")


class TestReport(BaseModel):
    """The outcome of one test command run."""

    __test__ = False
    command: str = Field(description="The command that ran.")
    exit_code: int | None = Field(description="Process exit code; None when it was killed on timeout.")
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: list[TestFailure] = Field(default_factory=list, description="Failing tests, capped in number.")
    output_tail: str = Field("", description="Last lines of combined output, capped.")
    duration_ms: int = 0
    timed_out: bool = False
    problem: str | None = Field(
        None,
        description="Why the test command could not run at all (command not found, "
        "not executable): a set-up problem, not a failing test.",
    )

    @property
    def ok(self) -> bool:
        """True when the command succeeded and nothing failed."""
        return self.exit_code == 0 and self.failed == 0 and self.errors == 0 and not self.timed_out

    def summary(self) -> str:
        """This run in one line: 'N passed, M failed, K errors' (+ ' (timed out)')."""
        return tests_line(self.passed, self.failed, self.errors, self.timed_out)

    def redacted(self, redact: Callable[[str], str]) -> TestReport:
        """A copy with `redact` applied to every text the tests produced (output, failures, problem): what a
        test prints reaches results, checkpoints, fixer prompts and reports only through this."""

        def scrub(text: str | None) -> str | None:
            return redact(text) if text else text

        return self.model_copy(
            update={
                "command": redact(self.command),
                "output_tail": redact(self.output_tail),
                "problem": scrub(self.problem),
                "failures": [
                    f.model_copy(update={"name": redact(f.name), "message": redact(f.message), "file": scrub(f.file)})
                    for f in self.failures
                ],
            }
        )

    def compact(self, *, tail: int = 2_000, failures: int = 10, message: int = 600) -> TestReport:
        """A copy small enough for a caller's context: the output's end (where the summary is), fewer failures."""
        return self.model_copy(
            update={
                "output_tail": self.output_tail[-tail:],
                "failures": [f.model_copy(update={"message": f.message[:message]}) for f in self.failures[:failures]],
            }
        )


class GenerateResult(BaseModel):
    """Result of the `generate` tool: raw model text plus metadata."""

    status: Literal["ok"] = "ok"
    response: str = Field(description="The model's answer text (reasoning removed).")
    model: str = Field(description="The model that answered, e.g. gpt-oss-120b.")
    provider: str = Field("", description="The provider preset that served it, e.g. cerebras.")
    total_duration_ms: int
    finish_reason: str | None = None
    usage: Usage


class WriteFilesResult(BaseModel):
    """Result of `generate_and_write_files`: metadata only, never file contents."""

    status: Literal["ok", "partial", "error"] = Field(
        description="ok: every file written; partial: some refused; error: none written."
    )
    output_dir: str = Field(description="Absolute directory the files were written under.")
    model: str = Field(description="The model that answered, e.g. gpt-oss-120b.")
    provider: str = Field("", description="The provider preset that served it, e.g. cerebras.")
    generation_time_ms: int
    files_written: list[WrittenFile]
    total_files: int
    total_lines: int
    errors: list[FileError]
    warnings: list[str] = Field(
        default_factory=list, description="Written, but worth a look (e.g. a file whose closing tag was missing)."
    )
    usage: Usage


class StatusResult(BaseModel):
    """Result of `check_status`: is a key set and does the endpoint answer. Never contains the key."""

    status: Literal["ok", "error"]
    url: str | None = Field(None, description="The generator's endpoint.")
    model: str | None = Field(None, description="The generator's model.")
    available_models: list[str] = Field(default_factory=list, description="Models the generator's endpoint lists.")
    roles: dict[str, str] = Field(
        default_factory=dict,
        description="Every role the default workflow (turbo with a task) needs, and the provider:model it uses.",
    )
    error: str | None = None
    setup_hint: str | None = None
    timeout_note: str | None = Field(None, description="How GENERATION_TIMEOUT was read, when it may surprise.")
    isolation: str | None = Field(None, description="How generated tests are isolated on this machine.")


class NextAction(BaseModel):
    """One thing the caller can do next: a tool and its arguments, which each edge renders in its own form."""

    tool: Literal["run_status", "resume_run", "cancel_run"] = Field(description="The MCP tool to call.")
    args: dict[str, str] = Field(description="Its arguments, e.g. {'run_id': ..., 'action': 'continue'}.")
    why: str = Field(description="When to do it, in words.")


class RunStatus(CompactModel):
    """What a caller sees about a run: compact, no file contents. Empty fields are left out."""

    run_id: str
    workflow: str
    status: Literal[
        "running", "passed", "failed", "stopped", "done", "needs_input", "interrupted", "cancelled", "error"
    ] = Field(
        description="running, passed, failed, stopped, done (judge), needs_input (the "
        "caller must act), interrupted (the process died: resume it), "
        "cancelled or error."
    )
    created_at: str
    output_dir: str | None = None
    progress: list[str] = Field(default_factory=list, description="Latest progress lines, oldest first.")
    runners: dict[str, str] = Field(
        default_factory=dict, description="While a showdown or any-percent runs: each runner's latest step."
    )
    result: dict[str, Any] | None = Field(None, description="The compact final result when the run is done.")
    report_path: str | None = Field(None, description="JSON file with the full report (every failure, edit and call).")
    needs: list[dict[str, Any]] | None = Field(None, description="Open interrupt payloads (needs_input).")
    error: str | None = None
    next: str | None = Field(None, description="What to do next, in words.")
    next_actions: list[NextAction] = Field(default_factory=list, description="What to do next, as tool calls.")


class RunRow(CompactModel):
    """One line of list_runs."""

    run_id: str
    workflow: str
    status: str
    created_at: str
    output_dir: str | None = None


class RunList(BaseModel):
    """Recent runs, newest first (no results; run_status gives one run's details)."""

    runs: list[RunRow]


class CleanedWorktree(BaseModel):
    """One worktree (and its branch) that `clean` removed."""

    run_id: str = Field(description="The run that made it.")
    name: str = Field(description="runner-N or variant-<slug>.")
    path: str = Field(description="The worktree's folder, now gone.")
    branch: str = Field(description="Its branch, now deleted.")

    def line(self) -> str:
        """The removal in one line, as the CLI prints it."""
        return f"run {self.run_id}: removed worktree {self.path} and branch {self.branch}"


class CleanResult(BaseModel):
    """What `clean` removed: the worktrees and branches of runs no process is driving, from their journals."""

    removed: list[CleanedWorktree] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list, description="What could not be removed, and why.")
    note: str = Field(
        "",
        description="What cleaning means for the runs it touched (they can no longer be resumed), or that "
        "there was nothing to clean.",
    )

    def lines(self) -> list[str]:
        """Every removal, then every problem, one line each."""
        return [r.line() for r in self.removed] + self.problems
