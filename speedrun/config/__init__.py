"""Settings: providers, roles → models, limits. Read from the environment once, at the edges."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_settings import BaseSettings, SettingsConfigDict

from speedrun.config.providers import PRESETS, ProviderLimits, ProviderPreset
from speedrun.errors import ConfigError, InputError, describe_validation, echo

MIN_SECRET_LEN = 8  # real API keys are far longer
MIN_MAX_TOKENS = 256  # the floor of SPEEDRUN_MAX_TOKENS and of a run context's max_tokens
SECONDS_BELOW = 1000  # a GENERATION_TIMEOUT under this is seconds (the original server read seconds), else ms

log = logging.getLogger("speedrun.config")
_warned_timeouts: set[int] = set()  # GENERATION_TIMEOUT values already warned about: warn once per value

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
    json_schema: bool = False  # the endpoint takes response_format json_schema
    strict: bool = False  # ... and enforces it strictly

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


#: Per shared-service setting: the service, its URL schemes, the extra that serves it, and that extra's top-level
#: modules.
_SHARED_SERVICES: dict[str, tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {
    "database_url": ("PostgreSQL", ("postgresql", "postgres"), "postgres", ("psycopg", "psycopg_pool")),
    "redis_url": ("Redis", ("redis", "rediss", "unix"), "redis", ("redis", "limits")),
}


class Settings(BaseSettings):
    """Everything configurable, read from the environment."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    cerebras_api_key: SecretStr | None = Field(None, validation_alias="CEREBRAS_API_KEY")
    cerebras_model: str = Field("gpt-oss-120b", validation_alias="CEREBRAS_MODEL")
    cerebras_url: str = Field("https://api.cerebras.ai/v1", validation_alias="CEREBRAS_URL")
    generation_timeout_ms: int = Field(
        30_000,
        gt=0,
        validation_alias="GENERATION_TIMEOUT",
        description="Wall-clock limit for one model call, in milliseconds; a value under 1000 is read as seconds.",
    )
    _timeout_given_in_s: int | None = PrivateAttr(None)

    groq_api_key: SecretStr | None = Field(None, validation_alias="GROQ_API_KEY")
    openrouter_api_key: SecretStr | None = Field(None, validation_alias="OPENROUTER_API_KEY")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    ollama_url: str = Field("http://localhost:11434/v1", validation_alias="SPEEDRUN_OLLAMA_URL")
    openai_compatible_url: str | None = Field(None, validation_alias="SPEEDRUN_OPENAI_COMPATIBLE_URL")
    openai_compatible_api_key: SecretStr | None = Field(None, validation_alias="SPEEDRUN_OPENAI_COMPATIBLE_API_KEY")

    provider: str = Field(
        "cerebras",
        validation_alias="SPEEDRUN_PROVIDER",
        description="Default provider[:model] of every role not set on its own.",
    )
    generator: str | None = Field(None, validation_alias="SPEEDRUN_GENERATOR")
    planner: str | None = Field(None, validation_alias="SPEEDRUN_PLANNER")
    fixer: str | None = Field(
        None, validation_alias="SPEEDRUN_FIXER", description="'client' means the caller fixes failing tests itself."
    )
    reviewer: str | None = Field(None, validation_alias="SPEEDRUN_REVIEWER")
    judge: str | None = Field(None, validation_alias="SPEEDRUN_JUDGE")
    generator_fallback: str | None = Field(None, validation_alias="SPEEDRUN_GENERATOR_FALLBACK")
    planner_fallback: str | None = Field(None, validation_alias="SPEEDRUN_PLANNER_FALLBACK")
    fixer_fallback: str | None = Field(None, validation_alias="SPEEDRUN_FIXER_FALLBACK")
    reviewer_fallback: str | None = Field(None, validation_alias="SPEEDRUN_REVIEWER_FALLBACK")
    judge_fallback: str | None = Field(None, validation_alias="SPEEDRUN_JUDGE_FALLBACK")

    limits: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        validation_alias="SPEEDRUN_LIMITS",
        description="Per-provider overrides, e.g. SPEEDRUN_LIMITS__CEREBRAS__RPM=5.",
    )
    max_retries: int = Field(
        4,
        ge=0,
        validation_alias="SPEEDRUN_MAX_RETRIES",
        description="Retries on 429/5xx/timeouts per call, before the fallback or an error.",
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, validation_alias="SPEEDRUN_REASONING_EFFORT", description="Sent to reasoning models (gpt-oss) only."
    )
    max_tokens_cap: int = Field(
        16_384,
        ge=MIN_MAX_TOKENS,
        validation_alias="SPEEDRUN_MAX_TOKENS",
        description="Upper bound for max_tokens when it is sized to the task.",
    )
    max_file_bytes: int = Field(1_000_000, ge=1, validation_alias="SPEEDRUN_MAX_FILE_BYTES")
    allow_paths: str | None = Field(
        None,
        validation_alias="SPEEDRUN_ALLOW_PATHS",
        description="Comma-separated relative paths the user allows even in protected "
        "places (e.g. .github/workflows/ci.yml).",
    )
    sandbox: Literal["auto", "bwrap", "none"] = Field(
        "auto",
        validation_alias="SPEEDRUN_SANDBOX",
        description="How tests run: bwrap (bubblewrap OS sandbox), none (scrubbed environment only), or auto "
        "(bwrap when it works here, else none with a warning).",
    )
    sandbox_network: bool = Field(
        False,
        validation_alias="SPEEDRUN_SANDBOX_NETWORK",
        description="Let sandboxed tests reach the network (off by default).",
    )
    roots: str | None = Field(
        None,
        validation_alias="SPEEDRUN_ROOTS",
        description="os.pathsep-separated directories the MCP server may write into.",
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias="SPEEDRUN_DATABASE_URL",
        description="postgresql://... to checkpoint runs to PostgreSQL (shared by many machines); "
        "unset: SQLite under SPEEDRUN_HOME.",
    )
    redis_url: SecretStr | None = Field(
        None,
        validation_alias="SPEEDRUN_REDIS_URL",
        description="redis://... to share each provider's rate budget across processes and machines; "
        "unset: a budget per process.",
    )
    home: Path = Field(
        default_factory=lambda: _default_home(),
        validation_alias="SPEEDRUN_HOME",
        description="State directory: run checkpoints, worksheets.",
    )

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        """`SPEEDRUN_DATABASE_URL=` (empty, as `env -u` cannot express in some launchers) means not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "redis_url")
    @classmethod
    def _shared_service_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A run store or budget URL with the right scheme and its optional extra installed, checked at load, so a
        mistake stops every entry point at once (exit 2) instead of failing a run at its first model call."""
        if value is None:
            return None
        service, schemes, extra, modules = _SHARED_SERVICES[str(info.field_name)]
        url = value.get_secret_value().strip()
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in schemes:
            example = f"{schemes[0]}://USER:PASSWORD@HOST/..."
            raise ValueError(
                f"{mask_url_credentials(url)[:200]!r} is not a {service} URL: give one like {example} "
                f"({' or '.join(s + '://' for s in schemes)}), or leave the variable unset"
            )
        credentials = _URL_CREDENTIALS.search(url)
        if credentials and any(c in credentials["password"] for c in "@/?#"):
            # Unencoded, these end the host part early: the client then reports part of the password as a host.
            raise ValueError(
                f"the password in {mask_url_credentials(url)[:200]!r} holds @, /, ? or # unencoded; percent-encode "
                "them (@ as %40, / as %2F, ? as %3F, # as %23)"
            )
        if any(importlib.util.find_spec(m) is None for m in modules):
            raise ValueError(
                f"the {extra} extra is not installed: `uv sync --inexact --extra {extra}` (or "
                f"`pip install 'speed-run[{extra}]'`), or leave the variable unset"
            )
        return SecretStr(url)

    @field_validator("limits", mode="before")
    @classmethod
    def _lower_limit_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            return {
                str(k).lower().replace("_", "-"): {str(f).lower(): n for f, n in (v or {}).items()}
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _timeout_in_seconds(self) -> Settings:
        # The seed's docs say milliseconds, the original server's code read seconds: 120 surely means 120 s.
        value = self.generation_timeout_ms
        if value < SECONDS_BELOW:
            self.generation_timeout_ms = value * 1000
            self._timeout_given_in_s = value
            if value not in _warned_timeouts:
                _warned_timeouts.add(value)
                log.warning("%s", self.timeout_note())
        return self

    def timeout_note(self) -> str | None:
        """How GENERATION_TIMEOUT was read, when it may surprise (a value under 1000 taken as seconds); else None."""
        given = self._timeout_given_in_s
        if given is None:
            return None
        return (
            f"GENERATION_TIMEOUT={given} is read as {given} seconds: values under 1000 are seconds, 1000 and "
            f"above are milliseconds. Write GENERATION_TIMEOUT={given * 1000} to say it in milliseconds."
        )

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

    def role_variable(self, role: Role) -> str:
        """The environment variable a role's provider[:model] is read from: SPEEDRUN_<ROLE>, else SPEEDRUN_PROVIDER."""
        return f"SPEEDRUN_{role.upper()}" if (getattr(self, role) or "").strip() else "SPEEDRUN_PROVIDER"

    def model_variable(self, role: Role) -> str:
        """The environment variable that picked a role's model: CEREBRAS_MODEL when the role names cerebras
        without a model, else the role's own variable (see role_variable)."""
        provider, _, model = self.role_string(role).partition(":")
        return (
            "CEREBRAS_MODEL"
            if provider.strip().lower() == "cerebras" and not model.strip()
            else self.role_variable(role)
        )

    def role(self, role: Role) -> RoleSpec:
        """Resolve a role to its models; raises ConfigError with the setup hint when a key is missing."""
        if role not in ROLES:
            raise ConfigError(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
        if role == "fixer" and self.fixer_is_client:
            raise ConfigError("The fixer role is 'client': the caller fixes, no model is configured for it.")
        primary = self._spec(role, self.role_string(role), self.role_variable(role))
        fb_text = getattr(self, f"{role}_fallback")
        fallback = self._spec(role, fb_text, f"SPEEDRUN_{role.upper()}_FALLBACK") if fb_text else None
        return RoleSpec(primary=primary, fallback=fallback)

    def _spec(self, role: str, text: str, var: str) -> ModelSpec:
        provider, _, model = text.strip().partition(":")
        provider = provider.strip().lower()
        preset = PRESETS.get(provider)
        if preset is None:
            close = difflib.get_close_matches(provider, list(PRESETS), n=1, cutoff=0.6)
            typo = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{var}={echo(text.strip())} names an unknown provider {echo(provider)}: {typo}"
                f"Use one of {', '.join(PRESETS)} (optionally followed by :model)."
            )
        key = self._key(preset)
        if preset.key_required and key is None:
            if provider == "cerebras":
                raise ConfigError(SETUP_HINT)
            raise ConfigError(
                f"{var} uses provider {provider!r} but {preset.key_env} is not set. "
                f"Export {preset.key_env}=... or pick another provider."
            )
        base_url: str | None = {
            "cerebras": self.cerebras_url,
            "ollama": self.ollama_url,
            "openai-compatible": self.openai_compatible_url,
        }.get(provider, preset.base_url)
        if not base_url:
            raise ConfigError(
                f"{var} uses 'openai-compatible' but SPEEDRUN_OPENAI_COMPATIBLE_URL is not set; "
                "set it to your server's base URL, e.g. http://127.0.0.1:8000/v1."
            )
        model = model.strip() or (self.cerebras_model if provider == "cerebras" else preset.default_model) or ""
        if not model:
            raise ConfigError(f"{var}={text!r} needs a model name: write it as {provider}:<model>.")
        override = self.limits.get(provider, {})
        defaults = preset.limits.model_dump()
        if is_loopback(base_url):
            # A local server (Ollama, vLLM) has no quota to protect: only the concurrency limit holds, unless
            # the user set per-minute limits for it.
            defaults.update(rpm=None, tpm=None)
        unknown = sorted(set(override) - set(ProviderLimits.model_fields))
        try:
            if unknown:
                raise ValueError(unknown)
            limits = ProviderLimits.model_validate({**defaults, **override})
        except Exception:
            var_base = f"SPEEDRUN_LIMITS__{provider.upper().replace('-', '_')}__"
            raise ConfigError(
                f"{var_base}<NAME> must be a positive integer, with NAME one of "
                f"{', '.join(n.upper() for n in ProviderLimits.model_fields)}; got "
                f"{echo({k.upper(): v for k, v in override.items()})}."
            ) from None
        return ModelSpec(
            role=role,
            provider=provider,
            model=model,
            base_url=base_url.rstrip("/"),
            api_key=key,
            limits=limits,
            json_schema=preset.json_schema,
            strict=preset.strict,
        )

    def _key(self, preset: ProviderPreset) -> SecretStr | None:
        field = {
            "cerebras": "cerebras_api_key",
            "groq": "groq_api_key",
            "openrouter": "openrouter_api_key",
            "openai": "openai_api_key",
            "openai-compatible": "openai_compatible_api_key",
        }.get(preset.name)
        key = getattr(self, field) if field else None
        return key if key is not None and key.get_secret_value().strip() else None

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction at the edges: the keys and the passwords in the URLs."""
        values = [
            self.cerebras_api_key,
            self.groq_api_key,
            self.openrouter_api_key,
            self.openai_api_key,
            self.openai_compatible_api_key,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value().strip()]
        for url in (self.cerebras_url, self.ollama_url, self.openai_compatible_url):
            found += url_passwords(url)
        for secret_url in (self.database_url, self.redis_url):
            found += url_passwords(secret_url.get_secret_value() if secret_url is not None else None)
        return found

    def redact_secrets(self, text: str) -> str:
        """Text with every configured secret value replaced by ***, and nothing else changed.

        For text that must otherwise stay exact, such as a model's reply that becomes source files: a generic
        `user:pass@` in generated code is the program's own, not ours to rewrite."""
        for secret in self._long_secrets():
            text = text.replace(secret, "***")
        return text

    def redact(self, text: str) -> str:
        """Text with every configured secret and every password in a URL replaced by ***: applied to anything
        that leaves the process (logs, errors, test output, results)."""
        return mask_url_credentials(self.redact_secrets(text))

    def redact_output(self, text: str) -> str:
        """redact(), for output that was cut to size before it got here (test output tails, trimmed failure
        messages): a secret cut in two at a line's start or end is masked as well, since its remaining part
        would no longer match the whole value."""
        text = self.redact(text)
        secrets = self._long_secrets()
        if not secrets:
            return text
        # Every MIN_SECRET_LEN-long piece of a secret: a line edge that is none of these needs no closer look.
        pieces = {sec[i : i + MIN_SECRET_LEN] for sec in secrets for i in range(len(sec) - MIN_SECRET_LEN + 1)}
        lines = text.split("\n")
        for n, line in enumerate(lines):
            if line[-MIN_SECRET_LEN:] in pieces:  # the start of a secret where the line ends
                line = _cut_edge(line, secrets, at_end=True)
            lead = 3 if line.startswith("...") else 0  # a cut mark
            if line[lead : lead + MIN_SECRET_LEN] in pieces:  # the end of a secret where the line begins
                line = line[:lead] + _cut_edge(line[lead:], secrets, at_end=False)
            lines[n] = line
        return "\n".join(lines)

    def _long_secrets(self) -> list[str]:
        # A placeholder like "x" is no secret, and replacing every "x" would garble the message. Longest first,
        # so a key that contains another is replaced whole.
        return sorted({s for s in self.secrets() if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)

    def stream_redactor(self) -> StreamRedactor:
        """A redactor for text that arrives in pieces (a streamed reply): see StreamRedactor."""
        return StreamRedactor(self._long_secrets())

    def allowed_paths(self) -> list[str]:
        """SPEEDRUN_ALLOW_PATHS as a list of relative paths (blank entries dropped); empty when unset."""
        if not self.allow_paths:
            return []
        return [p.strip() for p in self.allow_paths.split(",") if p.strip()]

    def allowed_roots(self) -> list[Path]:
        """SPEEDRUN_ROOTS as resolved paths; empty when unset."""
        if not self.roots:
            return []
        return [Path(p).expanduser().resolve() for p in self.roots.split(os.pathsep) if p.strip()]

    def write_roots(self) -> list[Path]:
        """Where a run may write when its caller names no roots: SPEEDRUN_ROOTS, else the working directory."""
        return self.allowed_roots() or [Path.cwd().resolve()]

    @property
    def generation_timeout_s(self) -> float:
        """GENERATION_TIMEOUT converted to seconds."""
        return self.generation_timeout_ms / 1000


# scheme://user:password@ — the password runs to the last "@" before the path (an unencoded "@" in it is common),
# and never across whitespace or quotes, so two URLs on one line stay apart.
# The password runs to the LAST @ of the URL: an unencoded @ or / inside a password (`p@ss/w0rd`) must not leave its
# tail shown. Over-masking a path that holds an @ is the price.
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:'\"<>]*):(?P<password>[^\s'\"<>]*)@")
# libpq and redis-py also take the password as a query parameter (`?password=...`).
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd)=)(?P<password>[^&;#\s'\"<>]*)", re.IGNORECASE)
#: What documentation and hints write in place of a password: shown as written, never masked.
PASSWORD_PLACEHOLDERS = frozenset({"PASSWORD", "PASS", "<password>"})


def _cut_edge(line: str, secrets: list[str], *, at_end: bool) -> str:
    """The line with the longest part of a secret (at least MIN_SECRET_LEN characters) that it ends with (the
    secret's start) or begins with (the secret's end) replaced by ***."""
    for secret in secrets:
        for k in range(len(secret) - 1, MIN_SECRET_LEN - 1, -1):
            if at_end and line.endswith(secret[:k]):
                return line[:-k] + "***"
            if not at_end and line.startswith(secret[-k:]):
                return "***" + line[k:]
    return line


def mask_url_credentials(text: str) -> str:
    """Every `scheme://user:pass@host` in text shown as `scheme://user:***@host` (the user name stays: it helps
    tell which account is meant), and every `?password=...` query value as `***`. The one rule for credentials in
    URLs; Settings.redact applies it."""

    def masked(m: re.Match[str], template: str) -> str:
        return m[0] if not m["password"] or m["password"] in PASSWORD_PLACEHOLDERS else template.format(m["head"])

    text = _URL_CREDENTIALS.sub(lambda m: masked(m, "{}:***@"), text)
    return _QUERY_PASSWORD.sub(lambda m: masked(m, "{}***"), text)


def url_passwords(url: str | None) -> list[str]:
    """The passwords in a URL (before its host, or as a `password=` query parameter), as written and
    percent-decoded (both may appear in messages); empty when none. Found by the same patterns that mask them."""
    if not url:
        return []
    found = [m["password"] for pattern in (_URL_CREDENTIALS, _QUERY_PASSWORD) for m in pattern.finditer(url.strip())]
    found = [p for p in found if p and p not in PASSWORD_PLACEHOLDERS]
    return list(dict.fromkeys(v for p in found for v in (p, unquote(p)) if v))


class StreamRedactor:
    """Redacts secrets from text that arrives in pieces, where a secret may be split across two of them.

    feed() passes on everything except the last len(longest secret) - 1 characters, which could be the start
    of a secret whose rest has not arrived yet; flush() releases them at the end. With no secrets it holds
    nothing back.
    """

    def __init__(self, secrets: list[str]):
        self._secrets = sorted(set(secrets), key=len, reverse=True)
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._held = ""

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def feed(self, piece: str) -> str:
        """The part of the text so far that is safe to pass on."""
        text = self._scrub(self._held + piece)
        if self._keep <= 0 or len(text) <= self._keep:
            self._held = text if self._keep > 0 else ""
            return "" if self._keep > 0 else text
        self._held = text[-self._keep :]
        return text[: -self._keep]

    def flush(self) -> str:
        """Whatever is still held back, redacted."""
        out, self._held = self._scrub(self._held), ""
        return out


HOME_MODE = 0o700  # run checkpoints hold contracts, code and test output: for the user's eyes only


def ensure_home(home: Path) -> Path:
    """Create SPEEDRUN_HOME with mode 0700, or tighten an existing one that is ours and looser; returns it.

    A directory owned by someone else is left alone (chmod would fail, and it is theirs to set)."""
    home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)  # the mode applies to home only, not its parents
    info = home.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o777 & ~HOME_MODE:
        home.chmod(HOME_MODE)
    return home


def check_apart_from_home(home: Path, workspace: Path, name: str = "output_dir") -> None:
    """Refuse a workspace that is SPEEDRUN_HOME, lies inside it, or contains it: the tests run there would see
    (and could change) every run's checkpoints, and generated files would land among them."""
    home_r, work_r = Path(home).expanduser().resolve(), Path(workspace).expanduser().resolve()
    if work_r == home_r or home_r in work_r.parents:
        where = "is" if work_r == home_r else "lies inside"
    elif work_r in home_r.parents:
        where = "contains"
    else:
        return
    raise InputError(
        f"{name} {echo(str(work_r))} {where} speed-run's state directory (SPEEDRUN_HOME="
        f"{echo(str(home_r))}), where other runs' checkpoints live. Choose an {name} outside it, or "
        "set SPEEDRUN_HOME to a directory outside your projects (default: ~/.local/state/speed-run)."
    )


def resolve_output_dir(output_dir: str, roots: list[Path], name: str = "output_dir") -> tuple[Path, Path]:
    """A relative output_dir resolves against the first root; the result must lie inside some root. Blocking.

    Returns (the resolved directory, the root it lies in). The one rule for MCP tools and Studio runs alike.
    """
    if not output_dir or not output_dir.strip():
        raise InputError(f"{name} is empty; pass a directory (relative to the project root, or absolute).")
    if "\x00" in output_dir:
        raise InputError(f"{name} contains a NUL byte.")
    path = Path(output_dir).expanduser()
    path = (path if path.is_absolute() else roots[0] / path).resolve()
    for root in roots:
        if path == root or path.is_relative_to(root):
            return path, root
    raise InputError(
        f"{name} {echo(output_dir)} resolves to {echo(str(path), 200)}, outside the allowed roots "
        f"({echo(', '.join(map(str, roots)), 200)}). Pass a directory inside them, or allow it: add it to "
        "SPEEDRUN_ROOTS (os.pathsep-separated) in the server's env, or open the client in that directory."
    )


def _default_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "speed-run"


def is_loopback(url: str | None) -> bool:
    """True for an endpoint on this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urlsplit(url or "").hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the environment once per process; edges call this, everything else receives the object."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:  # name the variable the user set, never echo its value (it may be a secret)
        summary = describe_validation(exc, where=lambda loc: _env_name(loc) or "settings", reword=_settings_message)
        raise ConfigError(f"Invalid speed-run settings: {summary}.") from None


def _env_name(loc: tuple[str | int, ...]) -> str:
    """A validation location in the user's words.

    ('SPEEDRUN_LIMITS', 'cerebras', 'rpm') → SPEEDRUN_LIMITS__CEREBRAS__RPM.
    """
    return "__".join(str(p).upper().replace("-", "_") for p in loc)


def _settings_message(err: Mapping[str, Any]) -> str | None:
    """Settings-specific wording for a validation error (they arrive as text, so 'whole number' not 'int')."""
    if err.get("type") == "int_parsing":
        return "must be a whole number"
    if err.get("type") == "greater_than" and err.get("loc", ("",))[0] == "GENERATION_TIMEOUT":
        return "must be a positive number (milliseconds, or seconds when under 1000)"
    return None


_ROLE_FORMAT = "'provider[:model]' (e.g. 'cerebras:gpt-oss-120b', 'groq:llama-3.3-70b-versatile')"


class RunContext(BaseModel):
    """Per-run model choices; an empty field keeps the environment's setting. API keys stay in the environment."""

    # The docstring above is what Studio shows over the form. Edges pass the Settings they read once
    # (`RunContext(settings)`): that field is left out of the JSON schema and of every dump, so keys never reach
    # Studio, a run record or a checkpoint. A context without Settings (Studio, or Python without one) reads the
    # environment, and its paths are checked against the allowed roots as MCP's are (nodes.common.confined).
    model_config = ConfigDict(extra="forbid")

    settings: SkipJsonSchema[Settings | None] = Field(None, exclude=True, repr=False)
    generator: str | None = Field(None, description=f"Model that writes the code: {_ROLE_FORMAT}.")
    planner: str | None = Field(None, description=f"Model that writes contracts and runner plans: {_ROLE_FORMAT}.")
    fixer: str | None = Field(
        None,
        description=f"Model that repairs failing tests with small edits: {_ROLE_FORMAT}, or 'client' to fix them "
        "yourself (the run pauses for you).",
    )
    reviewer: str | None = Field(
        None, description=f"Model that reviews implementations with fresh eyes: {_ROLE_FORMAT}."
    )
    judge: str | None = Field(None, description=f"Model that scores implementations: {_ROLE_FORMAT}.")
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="Reasoning effort sent to reasoning models (gpt-oss); others ignore it."
    )
    max_tokens: int | None = Field(
        None,
        description=f"Upper bound on one reply's max_tokens (at least {MIN_MAX_TOKENS}); speed-run sizes each call "
        "to its task below it.",
        json_schema_extra={"minimum": MIN_MAX_TOKENS},
    )

    def __init__(self, settings: Settings | None = None, /, **data: Any) -> None:
        # RunContext(settings) is how edges and tests build one; the keyword form and Studio's JSON work too.
        if settings is not None:
            data["settings"] = settings
        super().__init__(**data)

    @field_validator(*ROLES, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # A cleared field in Studio's form arrives as "": it means "as configured", not "no model".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def from_edge(self) -> bool:
        """True when an edge (CLI, MCP, a runner) passed its Settings: it has already checked the run's paths."""
        return self.settings is not None

    def apply(self, settings: Settings) -> Settings:
        """settings with this context's role, reasoning-effort and max-token choices on top (InputError if bad)."""
        roles: dict[str, str] = {r: v.strip() for r in ROLES if (v := getattr(self, r)) is not None}
        for role, value in roles.items():
            provider = value.partition(":")[0].strip().lower()
            if provider not in PRESETS and not (role == "fixer" and value.lower() == "client"):
                client = ", or 'client'" if role == "fixer" else ""
                raise InputError(
                    f"context {role}={echo(value)} names an unknown provider {echo(provider)}: write it as "
                    f"{_ROLE_FORMAT}, with the provider one of {', '.join(PRESETS)}{client}."
                )
        if self.max_tokens is not None and self.max_tokens < MIN_MAX_TOKENS:
            raise InputError(
                f"context max_tokens={self.max_tokens} is too small: use at least {MIN_MAX_TOKENS}, or leave it "
                "empty to keep SPEEDRUN_MAX_TOKENS."
            )
        update: dict[str, Any] = {}
        if self.reasoning_effort is not None:
            update["reasoning_effort"] = self.reasoning_effort
        if self.max_tokens is not None:
            update["max_tokens_cap"] = self.max_tokens
        settings = with_roles(settings, roles)
        return settings.model_copy(update=update) if update else settings


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
