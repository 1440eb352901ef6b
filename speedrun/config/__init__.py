"""Settings: providers, roles → models, limits. Read from the environment once, at the edges."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from speedrun.config.providers import PRESETS, ProviderLimits, ProviderPreset
from speedrun.errors import ConfigError

MIN_SECRET_LEN = 8  # real API keys are far longer

Role = Literal["generator", "planner", "fixer", "reviewer", "judge"]
ROLES: tuple[Role, ...] = ("generator", "planner", "fixer", "reviewer", "judge")

SETUP_HINT = (
    "No model provider is configured. Set CEREBRAS_API_KEY (free key at https://cloud.cerebras.ai): "
    'either add it to ~/.claude/settings.json as {"env": {"CEREBRAS_API_KEY": "..."}} or '
    "`export CEREBRAS_API_KEY=...` in your shell profile (~/.bashrc, ~/.zshrc), then restart the client. "
    "Or use a local OpenAI-compatible server instead: for Ollama set SPEEDRUN_PROVIDER=ollama:<model>, or "
    "SPEEDRUN_PROVIDER=openai-compatible:<model> with SPEEDRUN_OPENAI_COMPATIBLE_URL=http://host:port/v1 "
    "(SPEEDRUN_GENERATOR, _PLANNER, _FIXER, _REVIEWER and _JUDGE override it per role)."
)


class ModelSpec(BaseModel):
    """A resolved (provider, model, endpoint, key) for one role. Never stored in graph state."""

    role: str
    provider: str
    model: str
    base_url: str
    api_key: SecretStr | None = None
    limits: ProviderLimits

    @property
    def budget_key(self) -> str:
        """Identity of the shared rate budget: provider + URL + a hash of the key (never the key)."""
        secret = self.api_key.get_secret_value() if self.api_key else ""
        digest = hashlib.sha256(secret.encode()).hexdigest()[:12]
        return f"{self.provider}|{self.base_url}|{digest}"

    def describe(self) -> str:
        """Human-readable, key-free label."""
        return f"{self.provider}:{self.model}"


class RoleSpec(BaseModel):
    """A role's primary model and its optional fallback."""

    primary: ModelSpec
    fallback: ModelSpec | None = None


class Settings(BaseSettings):
    """Everything configurable, read from the environment."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    cerebras_api_key: SecretStr | None = Field(None, validation_alias="CEREBRAS_API_KEY")
    cerebras_model: str = Field("gpt-oss-120b", validation_alias="CEREBRAS_MODEL")
    cerebras_url: str = Field("https://api.cerebras.ai/v1", validation_alias="CEREBRAS_URL")
    generation_timeout_ms: int = Field(30_000, gt=0, validation_alias="GENERATION_TIMEOUT",
                                       description="Wall-clock limit for one model call, in milliseconds.")

    groq_api_key: SecretStr | None = Field(None, validation_alias="GROQ_API_KEY")
    openrouter_api_key: SecretStr | None = Field(None, validation_alias="OPENROUTER_API_KEY")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    ollama_url: str = Field("http://localhost:11434/v1", validation_alias="SPEEDRUN_OLLAMA_URL")
    openai_compatible_url: str | None = Field(None, validation_alias="SPEEDRUN_OPENAI_COMPATIBLE_URL")
    openai_compatible_api_key: SecretStr | None = Field(None, validation_alias="SPEEDRUN_OPENAI_COMPATIBLE_API_KEY")

    provider: str = Field("cerebras", validation_alias="SPEEDRUN_PROVIDER",
                          description="Default provider[:model] of every role not set on its own.")
    generator: str | None = Field(None, validation_alias="SPEEDRUN_GENERATOR")
    planner: str | None = Field(None, validation_alias="SPEEDRUN_PLANNER")
    fixer: str | None = Field(None, validation_alias="SPEEDRUN_FIXER",
                              description="'client' means the caller fixes failing tests itself.")
    reviewer: str | None = Field(None, validation_alias="SPEEDRUN_REVIEWER")
    judge: str | None = Field(None, validation_alias="SPEEDRUN_JUDGE")
    generator_fallback: str | None = Field(None, validation_alias="SPEEDRUN_GENERATOR_FALLBACK")
    planner_fallback: str | None = Field(None, validation_alias="SPEEDRUN_PLANNER_FALLBACK")
    fixer_fallback: str | None = Field(None, validation_alias="SPEEDRUN_FIXER_FALLBACK")
    reviewer_fallback: str | None = Field(None, validation_alias="SPEEDRUN_REVIEWER_FALLBACK")
    judge_fallback: str | None = Field(None, validation_alias="SPEEDRUN_JUDGE_FALLBACK")

    limits: dict[str, dict[str, int]] = Field(default_factory=dict, validation_alias="SPEEDRUN_LIMITS",
                                              description="Per-provider overrides, e.g. SPEEDRUN_LIMITS__CEREBRAS__RPM=5.")
    max_retries: int = Field(4, ge=0, validation_alias="SPEEDRUN_MAX_RETRIES",
                             description="Retries on 429/5xx/timeouts per call, before the fallback or an error.")
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, validation_alias="SPEEDRUN_REASONING_EFFORT", description="Sent to reasoning models (gpt-oss) only.")
    max_tokens_cap: int = Field(16_384, ge=256, validation_alias="SPEEDRUN_MAX_TOKENS",
                                description="Upper bound for max_tokens when it is sized to the task.")
    max_file_bytes: int = Field(1_000_000, ge=1, validation_alias="SPEEDRUN_MAX_FILE_BYTES")
    roots: str | None = Field(None, validation_alias="SPEEDRUN_ROOTS",
                              description="os.pathsep-separated directories the MCP server may write into.")
    home: Path = Field(default_factory=lambda: _default_home(), validation_alias="SPEEDRUN_HOME",
                       description="State directory: run checkpoints, worksheets.")

    @field_validator("limits", mode="before")
    @classmethod
    def _lower_limit_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k).lower().replace("_", "-"): {str(f).lower(): n for f, n in (v or {}).items()}
                    for k, v in value.items()}
        return value

    # --- resolution -------------------------------------------------------------------------------
    def role_string(self, role: Role) -> str:
        """The raw `provider[:model]` string configured for a role (SPEEDRUN_PROVIDER when it has none)."""
        return (getattr(self, role) or "").strip() or self.provider

    @property
    def fixer_is_client(self) -> bool:
        """True when the caller (e.g. Claude Code) fixes failing tests itself."""
        return self.role_string("fixer").strip().lower() == "client"

    def require(self, *roles: Role) -> None:
        """Fail fast, with the setup hint, unless every named role can reach a model (a client fixer needs none)."""
        for role in roles:
            if not (role == "fixer" and self.fixer_is_client):
                self.role(role)

    def role(self, role: Role) -> RoleSpec:
        """Resolve a role to its models; raises ConfigError with the setup hint when a key is missing."""
        if role not in ROLES:
            raise ConfigError(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
        if role == "fixer" and self.fixer_is_client:
            raise ConfigError("The fixer role is 'client': the caller fixes, no model is configured for it.")
        var = f"SPEEDRUN_{role.upper()}" if (getattr(self, role) or "").strip() else "SPEEDRUN_PROVIDER"
        primary = self._spec(role, self.role_string(role), var)
        fb_text = getattr(self, f"{role}_fallback")
        fallback = self._spec(role, fb_text, f"SPEEDRUN_{role.upper()}_FALLBACK") if fb_text else None
        return RoleSpec(primary=primary, fallback=fallback)

    def _spec(self, role: str, text: str, var: str) -> ModelSpec:
        provider, _, model = text.strip().partition(":")
        provider = provider.strip().lower()
        preset = PRESETS.get(provider)
        if preset is None:
            raise ConfigError(f"{var}={text!r} names an unknown provider {provider!r}; "
                              f"use one of {', '.join(PRESETS)} (optionally followed by :model).")
        key = self._key(preset)
        if preset.key_required and key is None:
            if provider == "cerebras":
                raise ConfigError(SETUP_HINT)
            raise ConfigError(f"{var} uses provider {provider!r} but {preset.key_env} is not set. "
                              f"Export {preset.key_env}=... or pick another provider.")
        base_url = {"cerebras": self.cerebras_url, "ollama": self.ollama_url,
                    "openai-compatible": self.openai_compatible_url}.get(provider, preset.base_url)
        if not base_url:
            raise ConfigError(f"{var} uses 'openai-compatible' but SPEEDRUN_OPENAI_COMPATIBLE_URL is not set; "
                              "set it to your server's base URL, e.g. http://127.0.0.1:8000/v1.")
        model = model.strip() or (self.cerebras_model if provider == "cerebras" else preset.default_model)
        if not model:
            raise ConfigError(f"{var}={text!r} needs a model name: write it as {provider}:<model>.")
        override = self.limits.get(provider, {})
        try:
            limits = preset.limits.model_copy(update=override) if override else preset.limits
            ProviderLimits.model_validate(limits.model_dump())
        except Exception:
            raise ConfigError(f"SPEEDRUN_LIMITS for {provider!r} must set positive integers for "
                              f"concurrency, rpm or tpm; got {override!r}.") from None
        return ModelSpec(role=role, provider=provider, model=model, base_url=base_url.rstrip("/"),
                         api_key=key, limits=limits)

    def _key(self, preset: ProviderPreset) -> SecretStr | None:
        field = {"cerebras": "cerebras_api_key", "groq": "groq_api_key", "openrouter": "openrouter_api_key",
                 "openai": "openai_api_key", "openai-compatible": "openai_compatible_api_key"}.get(preset.name)
        key = getattr(self, field) if field else None
        return key if key is not None and key.get_secret_value().strip() else None

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction at the edges."""
        values = [self.cerebras_api_key, self.groq_api_key, self.openrouter_api_key, self.openai_api_key,
                  self.openai_compatible_api_key]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value().strip()]

    def redact(self, text: str) -> str:
        """Text with every configured secret replaced by ***: applied to anything that leaves the process."""
        for secret in self.secrets():
            # A placeholder like "x" is no secret, and replacing every "x" would garble the message.
            if len(secret) >= MIN_SECRET_LEN:
                text = text.replace(secret, "***")
        return text

    def allowed_roots(self) -> list[Path]:
        """SPEEDRUN_ROOTS as resolved paths; empty when unset."""
        if not self.roots:
            return []
        return [Path(p).expanduser().resolve() for p in self.roots.split(os.pathsep) if p.strip()]

    @property
    def generation_timeout_s(self) -> float:
        """GENERATION_TIMEOUT converted to seconds."""
        return self.generation_timeout_ms / 1000


def _default_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "speed-run"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the environment once per process; edges call this, everything else receives the object."""
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: name the variable, never echo secret values
        raise ConfigError(f"Invalid speed-run settings: {_summarize_validation(exc)}") from None


def _summarize_validation(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


class RunContext:
    """Run-scoped context passed to graphs (`context=`): the settings object, never checkpointed."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings


def with_roles(settings: Settings, overrides: dict[str, str] | None) -> Settings:
    """A copy of settings with per-run role overrides ({'fixer': 'client', 'generator': 'groq:model'})."""
    if not overrides:
        return settings
    unknown = sorted(set(overrides) - set(ROLES) - {f"{r}_fallback" for r in ROLES})
    if unknown:
        raise ConfigError(f"roles has unknown keys {unknown}; use {', '.join(ROLES)} (or <role>_fallback).")
    for key, value in overrides.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"roles[{key!r}] must be 'provider[:model]' (or 'client' for fixer), got {value!r}.")
    return settings.model_copy(update=dict(overrides))
