"""Named provider presets: each is an OpenAI-compatible base URL plus the env var that holds its key."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ProviderLimits(BaseModel):
    """One provider's shared rate budget; every runner in the process queues on it."""

    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    rpm: int | None = Field(30, ge=1, description="Requests per minute; None means no per-minute request limit.")
    tpm: int | None = Field(
        60_000,
        ge=1,
        description="Tokens per minute, charged as prompt + max_tokens up front and "
        "settled to the real usage; None means no token limit.",
    )
    max_output_tokens: int = Field(
        32_768,
        ge=1,
        description="Largest max_tokens the model accepts; larger requests are capped to it (and charged as capped).",
    )


class ProviderPreset(BaseModel):
    """A provider known by name."""

    name: str
    base_url: str | None = Field(description="OpenAI-compatible base URL; None means the user must give one.")
    key_env: str | None = Field(description="Env var holding the API key; None means no key is needed.")
    default_model: str | None = Field(description="Model used when a role names only the provider.")
    limits: ProviderLimits = Field(default_factory=ProviderLimits)
    key_required: bool = True
    json_schema: bool = Field(
        False,
        description="Accepts response_format json_schema (structured outputs); "
        "otherwise json_object with the schema in the prompt.",
    )
    strict: bool = Field(False, description="Enforces json_schema strictly (constrained decoding).")


# Cerebras free tier at the time of writing: 30 req/min and 60K tokens/min (it has been 5 and 30K too;
# override with SPEEDRUN_LIMITS__CEREBRAS__RPM=... when yours differs). Its x-ratelimit-* headers win at run time.
# Cerebras limits requests and tokens per minute/hour/day, not requests in flight, so the concurrency is ours to
# choose: 5 lets a showdown's 5 runners all generate at once (with 4 the fifth waited: 1.63x one runner's time).
PRESETS: dict[str, ProviderPreset] = {
    p.name: p
    for p in [
        ProviderPreset(
            name="cerebras",
            base_url="https://api.cerebras.ai/v1",
            key_env="CEREBRAS_API_KEY",
            default_model="gpt-oss-120b",
            limits=ProviderLimits(concurrency=5, rpm=30, tpm=60_000),
            json_schema=True,
            strict=True,
        ),
        # Groq's json_schema is best-effort except on a few models, so it is not asked for strict decoding.
        ProviderPreset(
            name="groq",
            base_url="https://api.groq.com/openai/v1",
            key_env="GROQ_API_KEY",
            default_model="openai/gpt-oss-120b",
            limits=ProviderLimits(concurrency=4, rpm=30, tpm=8_000),
            json_schema=True,
            strict=False,
        ),
        ProviderPreset(
            name="openrouter",
            base_url="https://openrouter.ai/api/v1",
            key_env="OPENROUTER_API_KEY",
            default_model="openai/gpt-oss-120b",
            limits=ProviderLimits(concurrency=8, rpm=60, tpm=400_000),
            json_schema=True,
            strict=True,
        ),
        ProviderPreset(
            name="openai",
            base_url="https://api.openai.com/v1",
            key_env="OPENAI_API_KEY",
            default_model="gpt-4.1-mini",
            limits=ProviderLimits(concurrency=8, rpm=500, tpm=200_000),
            json_schema=True,
            strict=True,
        ),
        ProviderPreset(
            name="ollama",
            base_url="http://localhost:11434/v1",
            key_env=None,
            key_required=False,
            default_model="qwen2.5-coder",
            limits=ProviderLimits(concurrency=1, rpm=None, tpm=None),
        ),
        ProviderPreset(
            name="openai-compatible",
            base_url=None,
            key_env="SPEEDRUN_OPENAI_COMPATIBLE_API_KEY",
            key_required=False,
            default_model=None,
            limits=ProviderLimits(concurrency=4, rpm=1_000, tpm=10_000_000),
        ),
    ]
}
