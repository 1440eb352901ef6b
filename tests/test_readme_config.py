"""README's Configuration section against the code: every variable read is documented, with its real default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from speedrun.config import Settings
from speedrun.config.providers import PRESETS, ProviderLimits

ROOT = Path(__file__).resolve().parent.parent
# What an environment variable of ours looks like when the code names it in a string constant.
ENV_NAME = re.compile(r"(?:SPEEDRUN|CEREBRAS|GROQ|OPENROUTER|OPENAI|GENERATION|XDG)_[A-Z0-9_]*[A-Z0-9]")
NESTED = "SPEEDRUN_LIMITS"  # read as SPEEDRUN_LIMITS__<PROVIDER>__<FIELD>, documented in that form


def _section(title: str) -> str:
    """The text of README's '## title' section, up to the next top-level heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_rows(section: str) -> list[list[str]]:
    """The cells of every Markdown table row in a section (header and separator rows included)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("|")
    ]


def _settings_variables() -> set[str]:
    """Every variable the Settings class reads (its validation aliases)."""
    names = {f.validation_alias for f in Settings.model_fields.values()}
    assert all(isinstance(n, str) for n in names), names  # an AliasChoices would need its own handling here
    return {str(n) for n in names}


def _code_variables() -> set[str]:
    """Every environment-variable name that appears as a whole string constant in speedrun/ (e.g. TOKEN_ENV)."""
    found: set[str] = set()
    for path in (ROOT / "speedrun").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
                found.add(node.value)
    return found


def _documented(section: str) -> set[str]:
    return set(ENV_NAME.findall(section))


def test_the_collectors_find_the_variables() -> None:
    # A broken collector would make the checks below pass vacuously.
    assert {"CEREBRAS_API_KEY", "GENERATION_TIMEOUT", "SPEEDRUN_HOME", NESTED} <= _settings_variables()
    assert len(_settings_variables()) > 25
    assert {"SPEEDRUN_RUNNER", "XDG_STATE_HOME"} <= _code_variables()


def test_every_variable_the_settings_read_is_in_configuration() -> None:
    section = _section("Configuration")
    documented = _documented(section)
    missing = sorted(_settings_variables() - {NESTED} - documented)
    assert not missing, f"README's Configuration section does not name {missing}"
    assert f"{NESTED}__<PROVIDER>__" in section
    for field in ProviderLimits.model_fields:
        assert f"__{field.upper()}`" in section, f"limit {field} is not documented"


def test_every_variable_named_in_the_code_is_in_configuration() -> None:
    keys = {p.key_env for p in PRESETS.values() if p.key_env}
    missing = sorted((_code_variables() | keys) - {NESTED} - _documented(_section("Configuration")))
    assert not missing, f"README's Configuration section does not name {missing}"


def test_every_documented_variable_exists() -> None:
    """The other direction: a variable in the table's first column that the code no longer reads is stale."""
    known = _settings_variables() | _code_variables()
    rows = [r for r in _table_rows(_section("Configuration")) if r and r[0].startswith("`")]
    named = {n for r in rows for n in ENV_NAME.findall(r[0]) if not n.startswith(f"{NESTED}__")}
    assert named, "no variable rows found"
    assert not sorted(named - known), f"documented but never read: {sorted(named - known)}"


def _default_text(value: object) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, f in Settings.model_fields.items()
        if isinstance(f.default, str | int) and isinstance(f.validation_alias, str)
    ),
)
def test_each_default_in_the_table_is_the_real_one(name: str) -> None:
    field = Settings.model_fields[name]
    rows = [r for r in _table_rows(_section("Configuration")) if f"`{field.validation_alias}`" in r[0]]
    assert rows, f"no Configuration row for {field.validation_alias}"
    assert f"`{_default_text(field.default)}`" in rows[0][1], (field.validation_alias, rows[0][1])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_provider_preset_is_listed_with_its_model_and_limits(preset: str) -> None:
    p = PRESETS[preset]
    rows = [r for r in _table_rows(_section("Configuration")) if r[0] == f"`{preset}`"]
    assert rows, f"provider {preset} has no row in the providers table"
    row = " | ".join(rows[0])
    model = "CEREBRAS_MODEL" if preset == "cerebras" else p.default_model
    assert model is None or f"`{model}`" in row, row
    if p.key_env:
        assert p.key_env in row, row
    limits = p.limits
    shown = [f"{v:,}" if v is not None else "—" for v in (limits.concurrency, limits.rpm, limits.tpm)]
    assert " / ".join(shown) in row, (row, shown)
