"""Settings (speedrun.config): seed defaults, provider presets, roles, limits and the setup hint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from speedrun.config import ROLES, SETUP_HINT, Settings, load_settings, with_roles
from speedrun.errors import ConfigError

KEY = "csk-config-SECRET-0042"


@pytest.fixture
def fresh_load_settings() -> Iterator[None]:
    """load_settings() caches per process; clear it around tests that call it."""
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def test_seed_defaults(clean_env) -> None:
    s = Settings()
    assert s.cerebras_model == "gpt-oss-120b"
    assert s.cerebras_url == "https://api.cerebras.ai/v1"
    assert s.generation_timeout_ms == 30_000
    assert s.generation_timeout_s == 30.0
    assert s.cerebras_api_key is None


def test_every_role_defaults_to_cerebras_with_the_seed_variables(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("CEREBRAS_MODEL", "llama-4-scout-17b-16e-instruct")
    clean_env.setenv("CEREBRAS_URL", "http://127.0.0.1:9999/v1/")
    clean_env.setenv("GENERATION_TIMEOUT", "1234")
    s = Settings()
    for role in ROLES:
        spec = s.role(role)
        assert spec.fallback is None
        assert (spec.primary.provider, spec.primary.model) == ("cerebras", "llama-4-scout-17b-16e-instruct")
        assert spec.primary.base_url == "http://127.0.0.1:9999/v1"
        assert spec.primary.api_key.get_secret_value() == KEY
    assert s.generation_timeout_s == pytest.approx(1.234)


def test_missing_key_gives_the_setup_hint(clean_env) -> None:
    with pytest.raises(ConfigError) as info:
        Settings().role("generator")
    message = str(info.value)
    assert message == SETUP_HINT
    for needle in ("CEREBRAS_API_KEY", "settings.json", "shell profile", "Ollama", "SPEEDRUN_PROVIDER=ollama:"):
        assert needle in message


def test_blank_key_counts_as_missing(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", "   ")
    with pytest.raises(ConfigError, match="CEREBRAS_API_KEY"):
        Settings().role("generator")


def test_ollama_needs_no_key_and_keeps_colons_in_the_model_name(clean_env) -> None:
    clean_env.setenv("SPEEDRUN_GENERATOR", "ollama:qwen2.5-coder:7b")
    spec = Settings().role("generator").primary
    assert (spec.provider, spec.model) == ("ollama", "qwen2.5-coder:7b")
    assert spec.base_url == "http://localhost:11434/v1"
    assert spec.api_key is None


def test_ollama_url_and_default_model(clean_env) -> None:
    clean_env.setenv("SPEEDRUN_GENERATOR", " Ollama ")
    clean_env.setenv("SPEEDRUN_OLLAMA_URL", "http://gpu-box:11434/v1")
    spec = Settings().role("generator").primary
    assert (spec.provider, spec.model, spec.base_url) == ("ollama", "qwen2.5-coder", "http://gpu-box:11434/v1")


@pytest.mark.parametrize(
    ("provider", "key_env", "url"),
    [
        ("groq", "GROQ_API_KEY", "https://api.groq.com/openai/v1"),
        ("openrouter", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
        ("openai", "OPENAI_API_KEY", "https://api.openai.com/v1"),
    ],
)
def test_hosted_presets_use_their_key_variable(clean_env, provider: str, key_env: str, url: str) -> None:
    clean_env.setenv("SPEEDRUN_PLANNER", f"{provider}:vendor/model:free")
    with pytest.raises(ConfigError) as info:
        Settings().role("planner")
    assert key_env in str(info.value) and "SPEEDRUN_PLANNER" in str(info.value)

    clean_env.setenv(key_env, "k-" + provider)
    spec = Settings().role("planner").primary
    assert (spec.provider, spec.model, spec.base_url) == (provider, "vendor/model:free", url)
    assert spec.api_key.get_secret_value() == "k-" + provider


def test_openai_compatible_needs_a_url(clean_env) -> None:
    clean_env.setenv("SPEEDRUN_GENERATOR", "openai-compatible:my-model")
    with pytest.raises(ConfigError, match="SPEEDRUN_OPENAI_COMPATIBLE_URL"):
        Settings().role("generator")
    clean_env.setenv("SPEEDRUN_OPENAI_COMPATIBLE_URL", "http://127.0.0.1:8000/v1")
    spec = Settings().role("generator").primary
    assert (spec.model, spec.base_url, spec.api_key) == ("my-model", "http://127.0.0.1:8000/v1", None)


def test_openai_compatible_needs_a_model_name(clean_env) -> None:
    clean_env.setenv("SPEEDRUN_GENERATOR", "openai-compatible")
    clean_env.setenv("SPEEDRUN_OPENAI_COMPATIBLE_URL", "http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="openai-compatible:<model>"):
        Settings().role("generator")


def test_unknown_provider_names_the_variable(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("SPEEDRUN_REVIEWER", "cerebrus:gpt-oss-120b")
    with pytest.raises(ConfigError) as info:
        Settings().role("reviewer")
    message = str(info.value)
    assert "SPEEDRUN_REVIEWER" in message and "'cerebrus'" in message
    assert "cerebras" in message and "ollama" in message  # lists the valid ones
    Settings().role("generator")  # other roles are unaffected


def test_fallback_is_only_used_when_configured(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    assert Settings().role("generator").fallback is None
    clean_env.setenv("SPEEDRUN_GENERATOR_FALLBACK", "groq:llama-3.3-70b")
    clean_env.setenv("GROQ_API_KEY", "gsk-test")
    spec = Settings().role("generator")
    assert spec.primary.provider == "cerebras"
    assert (spec.fallback.provider, spec.fallback.model) == ("groq", "llama-3.3-70b")
    assert Settings().role("judge").fallback is None


def test_fixer_client(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("SPEEDRUN_FIXER", "client")
    s = Settings()
    assert s.fixer_is_client
    with pytest.raises(ConfigError, match="client"):
        s.role("fixer")


def test_limit_overrides_merge_with_preset_defaults(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("SPEEDRUN_LIMITS__CEREBRAS__RPM", "5")
    clean_env.setenv("SPEEDRUN_LIMITS__OPENAI_COMPATIBLE__CONCURRENCY", "2")
    clean_env.setenv("SPEEDRUN_JUDGE", "openai-compatible:m")
    clean_env.setenv("SPEEDRUN_OPENAI_COMPATIBLE_URL", "http://127.0.0.1:8000/v1")
    s = Settings()
    cerebras = s.role("generator").primary.limits
    assert (cerebras.concurrency, cerebras.rpm, cerebras.tpm) == (5, 5, 60_000)
    other = s.role("judge").primary.limits
    assert (other.concurrency, other.rpm, other.tpm) == (2, None, None)  # on loopback: concurrency only


def test_cerebras_preset_defaults_to_free_tier_limits(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    limits = Settings().role("generator").primary.limits
    assert (limits.rpm, limits.tpm) == (30, 60_000)


def test_invalid_limit_is_a_config_error(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("SPEEDRUN_LIMITS__CEREBRAS__RPM", "0")
    with pytest.raises(ConfigError, match="SPEEDRUN_LIMITS"):
        Settings().role("generator")


def test_home_env_var_does_not_leak_into_settings_home(clean_env, tmp_path: Path) -> None:
    clean_env.delenv("SPEEDRUN_HOME")
    clean_env.setenv("HOME", str(tmp_path / "user"))
    assert Settings().home == tmp_path / "user" / ".local" / "state" / "speed-run"
    clean_env.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().home == tmp_path / "xdg" / "speed-run"
    clean_env.setenv("SPEEDRUN_HOME", str(tmp_path / "explicit"))
    assert Settings().home == tmp_path / "explicit"


def test_roots_are_split_and_resolved(clean_env, tmp_path: Path) -> None:
    import os

    clean_env.setenv("SPEEDRUN_ROOTS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b" / "..")]))
    assert Settings().allowed_roots() == [tmp_path / "a", tmp_path]
    clean_env.delenv("SPEEDRUN_ROOTS")
    assert Settings().allowed_roots() == []


def test_budget_identity_never_contains_the_key(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    one = Settings().role("generator").primary
    clean_env.setenv("CEREBRAS_API_KEY", KEY + "-other")
    two = Settings().role("generator").primary
    assert one.budget_key != two.budget_key  # different keys get different budgets
    assert Settings().role("planner").primary.budget_key == two.budget_key  # roles share one
    for shown in (one.budget_key, repr(one), one.describe(), one.model_dump_json()):
        assert KEY not in shown


def test_with_roles_overrides_and_rejects_unknown_keys(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    s = Settings()
    changed = with_roles(s, {"fixer": "client", "generator": "ollama:qwen"})
    assert changed.fixer_is_client and changed.role("generator").primary.provider == "ollama"
    assert not s.fixer_is_client  # the original is untouched
    with pytest.raises(ConfigError, match="unknown keys"):
        with_roles(s, {"writer": "ollama:x"})
    with pytest.raises(ConfigError, match="provider"):
        with_roles(s, {"planner": " "})


def test_load_settings_names_the_bad_variable_and_hides_secrets(clean_env, fresh_load_settings) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("GENERATION_TIMEOUT", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "GENERATION_TIMEOUT" in str(info.value)
    assert KEY not in str(info.value)


def test_load_settings_reads_the_environment_once(clean_env, fresh_load_settings) -> None:
    clean_env.setenv("CEREBRAS_MODEL", "first")
    assert load_settings().cerebras_model == "first"
    clean_env.setenv("CEREBRAS_MODEL", "second")
    assert load_settings() is load_settings()
    assert load_settings().cerebras_model == "first"


def test_one_provider_setting_covers_every_role_and_roles_can_override_it(clean_env) -> None:
    clean_env.setenv("SPEEDRUN_PROVIDER", "ollama:qwen2.5-coder:7b")
    clean_env.setenv("SPEEDRUN_JUDGE", "groq")
    clean_env.setenv("GROQ_API_KEY", "gsk-test")
    s = Settings()
    for role in ("generator", "planner", "fixer", "reviewer"):
        primary = s.role(role).primary
        assert (primary.provider, primary.model, primary.api_key) == ("ollama", "qwen2.5-coder:7b", None)
    assert s.role("judge").primary.provider == "groq"
    clean_env.setenv("SPEEDRUN_PROVIDER", "nosuch")
    with pytest.raises(ConfigError, match="SPEEDRUN_PROVIDER='nosuch'"):
        Settings().role("generator")


def test_redaction_hides_keys_but_leaves_text_alone_for_placeholders(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", "csk-0123456789abcdef")
    assert Settings().redact("bad key csk-0123456789abcdef sent") == "bad key *** sent"
    clean_env.setenv("CEREBRAS_API_KEY", "x")  # a placeholder is not a secret worth garbling messages for
    assert Settings().redact("max_fix_cycles") == "max_fix_cycles"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8080/v1", "http://127.0.1.1/v1"]
)
def test_loopback_endpoints_get_concurrency_only_unless_limits_are_set(clean_env, url: str) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("CEREBRAS_URL", url)
    limits = Settings().role("generator").primary.limits
    assert (limits.concurrency, limits.rpm, limits.tpm) == (5, None, None)
    clean_env.setenv("SPEEDRUN_LIMITS__CEREBRAS__TPM", "60000")
    limits = Settings().role("generator").primary.limits
    assert (limits.rpm, limits.tpm) == (None, 60_000)


def test_remote_endpoint_keeps_the_preset_limits(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("CEREBRAS_URL", "https://127.0.0.1.nip.io/v1")  # a name, not the loopback address
    limits = Settings().role("generator").primary.limits
    assert (limits.rpm, limits.tpm, limits.max_output_tokens) == (30, 60_000, 32_768)
    clean_env.setenv("SPEEDRUN_LIMITS__CEREBRAS__MAX_OUTPUT_TOKENS", "65536")
    assert Settings().role("generator").primary.limits.max_output_tokens == 65_536


@pytest.mark.parametrize(
    ("preset", "json_schema", "strict"),
    [
        ("cerebras", True, True),
        ("openai", True, True),
        ("groq", True, False),
        ("openrouter", True, True),
        ("ollama", False, False),
        ("openai-compatible", False, False),
    ],
)
def test_presets_say_how_they_take_structured_answers(clean_env, preset: str, json_schema: bool, strict: bool) -> None:
    for var in ("CEREBRAS_API_KEY", "OPENAI_API_KEY", "GROQ_API_KEY", "OPENROUTER_API_KEY"):
        clean_env.setenv(var, KEY)
    clean_env.setenv("SPEEDRUN_OPENAI_COMPATIBLE_URL", "http://127.0.0.1:8000/v1")
    clean_env.setenv("SPEEDRUN_JUDGE", f"{preset}:m")
    spec = Settings().role("judge").primary
    assert (spec.json_schema, spec.strict) == (json_schema, strict)


def test_generation_timeout_under_1000_is_seconds_and_says_so(clean_env, caplog) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="speedrun.config")
    clean_env.setenv("GENERATION_TIMEOUT", "117")
    first, second = Settings(), Settings()
    assert first.generation_timeout_ms == 117_000 and first.generation_timeout_s == 117.0
    note = second.timeout_note()
    assert note and "117 seconds" in note and "GENERATION_TIMEOUT=117000" in note
    warnings = [r for r in caplog.records if "GENERATION_TIMEOUT=117 " in r.getMessage()]
    assert len(warnings) == 1  # once, not per Settings()
    clean_env.setenv("GENERATION_TIMEOUT", "1500")
    assert (Settings().generation_timeout_ms, Settings().timeout_note()) == (1500, None)
    clean_env.delenv("GENERATION_TIMEOUT")
    assert (Settings().generation_timeout_ms, Settings().timeout_note()) == (30_000, None)


def test_allow_paths_are_split_and_trimmed(clean_env) -> None:
    assert Settings().allowed_paths() == []
    clean_env.setenv("SPEEDRUN_ALLOW_PATHS", " .github/workflows/ci.yml, ,.husky/pre-commit ")
    assert Settings().allowed_paths() == [".github/workflows/ci.yml", ".husky/pre-commit"]


def test_provider_typo_is_named_as_a_typo(clean_env) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv("SPEEDRUN_PROVIDER", "cerebrus:gpt-oss-120b")
    with pytest.raises(ConfigError, match="did you mean 'cerebras'"):
        Settings().role("generator")
    clean_env.setenv("SPEEDRUN_PROVIDER", "x" * 5000)
    with pytest.raises(ConfigError) as info:
        Settings().role("generator")
    assert "did you mean" not in str(info.value) and len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GENERATION_TIMEOUT", "-5", "GENERATION_TIMEOUT"),
        ("GENERATION_TIMEOUT", "soon", "GENERATION_TIMEOUT: must be a whole number"),
        ("SPEEDRUN_LIMITS__CEREBRAS__RPM", "lots", "SPEEDRUN_LIMITS__CEREBRAS__RPM: must be a whole number"),
        ("SPEEDRUN_MAX_RETRIES", "-1", "SPEEDRUN_MAX_RETRIES"),
    ],
)
def test_load_settings_errors_speak_the_users_words(
    clean_env, fresh_load_settings, name: str, value: str, expected: str
) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", KEY)
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert expected in message
    for noise in (
        "For further information",
        "errors.pydantic.dev",
        "validation error for",
        "Settings\n",
        "type=",
        "input_value",
        KEY,
    ):
        assert noise not in message
