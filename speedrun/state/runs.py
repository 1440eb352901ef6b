"""Records of the run machinery: what a run is (RunMeta) and the caller's answer to a paused run (ResumeAnswer)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from speedrun.errors import InputError, describe_validation, echo
from speedrun.state.edits import Edit

ResumeAction = Literal["retest", "stop", "edits"]
_ACTIONS = ("retest", "stop", "edits")
# Checkpoint metadata keys of a run (see RunMeta); prefixed because LangGraph adds its own keys beside them.
META_WORKFLOW = "speedrun_workflow"
META_CREATED = "speedrun_created_at"
META_OUTPUT_DIR = "speedrun_output_dir"


class ResumeAnswer(BaseModel):
    """What the caller says to a run waiting for its fix: run the tests again, stop, or apply these edits."""

    action: ResumeAction = Field(
        description="retest: the caller fixed the files, run the tests again; stop: end the run; "
        "edits: apply `edits`, then run the tests again."
    )
    edits: list[Edit] = Field(
        default_factory=list, description="For action 'edits': search/replace edits, applied in order."
    )

    @model_validator(mode="after")
    def _edits_need_edits(self) -> ResumeAnswer:
        if self.action == "edits" and not self.edits:
            raise ValueError("action 'edits' needs a non-empty `edits` list of {path, search, replace}.")
        return self

    @classmethod
    def read(cls, answer: object) -> ResumeAnswer:
        """The answer in any form a caller or a checkpoint holds it (a ResumeAnswer, its dict, or the bare action
        'retest'/'stop'), validated; InputError naming the bad part and the expected shape otherwise."""
        if isinstance(answer, cls):
            return answer
        if isinstance(answer, str):
            answer = {"action": answer}
        if not isinstance(answer, dict) or answer.get("action") not in _ACTIONS:
            raise InputError(
                f"resume value must be 'retest', 'stop' or {{'action': 'edits', 'edits': [...]}}; got {echo(answer)}."
            )
        raw = answer.get("edits") or []
        if not isinstance(raw, list):
            raise InputError("`edits` must be a list of {path, search, replace} objects.")
        edits = [_edit(n, item) for n, item in enumerate(raw, 1)]
        if answer["action"] == "edits" and not edits:
            raise InputError("action 'edits' needs a non-empty `edits` list of {path, search, replace}.")
        return cls(action=answer["action"], edits=edits)


def _edit(n: int, item: Any) -> Edit:
    """Edit number `n` of the answer, or an InputError that names it (without pydantic's wording)."""
    if isinstance(item, Edit):
        return item
    if not isinstance(item, dict):
        raise InputError(f"edit {n} is not an object: each edit is {{path, search, replace}} with string values.")
    try:
        return Edit.model_validate(item)
    except ValidationError as exc:
        raise InputError(
            f"edit {n} is not valid ({describe_validation(exc)}): each edit needs string "
            "`path`, `search` and `replace`."
        ) from None


class RunMeta(BaseModel):
    """What a run is, stored as metadata on each of its checkpoints so the checkpointer can be queried for it."""

    workflow: str = Field(description="The graph that runs it: turbo or judge.")
    created_at: str = Field(description="When it was started, ISO 8601 in UTC to the second.")
    output_dir: str | None = Field(None, description="The directory it writes (turbo), if any.")

    def as_metadata(self) -> dict[str, str]:
        """The run's facts as checkpoint metadata (strings only: LangGraph drops a None)."""
        data = {META_WORKFLOW: self.workflow, META_CREATED: self.created_at}
        return data | ({META_OUTPUT_DIR: self.output_dir} if self.output_dir is not None else {})

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> RunMeta | None:
        """The run's facts from a checkpoint's metadata; None for a checkpoint that speed-run did not label."""
        if not isinstance(metadata.get(META_WORKFLOW), str):
            return None
        return cls(
            workflow=metadata[META_WORKFLOW],
            created_at=str(metadata.get(META_CREATED) or ""),
            output_dir=metadata.get(META_OUTPUT_DIR),
        )
