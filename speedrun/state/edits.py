"""Search/replace edits proposed by the fixer model, and what became of each one when applied."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# "already_applied" was added after the others: code that knows only those treats it as "not applied".
EditStatus = Literal["applied", "not_found", "ambiguous", "refused", "error", "already_applied"]


class Edit(BaseModel):
    """One exact search/replace on one file. Also an LLM output schema, so no defaults."""

    path: str = Field(description="File path relative to the workspace root, e.g. src/app.py.")
    search: str = Field(
        description=(
            "Whole lines currently in the file, copied character for character including indentation, "
            "with enough surrounding lines to occur exactly once. Empty only to create a new file or fill an "
            "empty one."
        )
    )
    replace: str = Field(
        description="The whole lines that replace the search lines (the whole content for a new file)."
    )


class FixPlan(BaseModel):
    """The fixer's answer: what is wrong, and the smallest edits that fix it. Also an LLM output schema."""

    diagnosis: str = Field(description="One or two sentences: what is wrong and why the tests fail.")
    edits: list[Edit] = Field(description="Small search/replace edits, applied in order; never rewrite a whole file.")


class EditOutcome(BaseModel):
    """What happened to one edit."""

    edit: Edit = Field(description="The edit as proposed.")
    status: EditStatus = Field(
        description=(
            "applied; not_found (search lines absent); ambiguous (occur more than once); "
            "refused (unsafe path, whole-file rewrite, no-op); error (could not read or write the file); "
            "already_applied (the replace lines are in the file already and the search lines are not)."
        )
    )
    message: str = Field("", description="For applied: where; otherwise what to do differently, in actionable words.")
    closest: str | None = Field(
        None,
        description="For not_found and already_applied: a few lines of the file around the most similar region, "
        "with line numbers ('  12| code').",
    )
    backup: str | None = Field(
        None, description="For applied edits to an existing file: where the old version was saved."
    )
    lines_removed: int = Field(0, description="For applied edits: lines of the file the edit replaced.")
    lines_added: int = Field(0, description="For applied edits: lines written in their place.")
