#!/usr/bin/env bash
# SessionStart hook of the speed-run plugin: warn once per session when no model provider is configured.
#
# Silent (exit 0, no output) when CEREBRAS_API_KEY is set, or when SPEEDRUN_GENERATOR (or SPEEDRUN_PROVIDER) points at a
# provider that is usable without it (ollama, openai-compatible, or a hosted preset whose own key is set).
# Otherwise prints one JSON object: a systemMessage for the user and additionalContext for the model.
# It only tests whether variables are empty; it never prints a value. Pure bash: no python, no jq.
set -u
trap 'exit 0' EXIT  # a hook that fails must never get in the way of the session

trim() {
    local text="$1"
    text="${text#"${text%%[![:space:]]*}"}"
    printf '%s' "${text%"${text##*[![:space:]]}"}"
}

has_value() {
    [ -n "$(trim "${1:-}")" ]
}

provider_ready() {
    has_value "${CEREBRAS_API_KEY:-}" && return 0
    # Same parsing as the settings: "provider[:model]", case-insensitive, surrounding spaces ignored.
    local generator provider
    generator="$(trim "${SPEEDRUN_GENERATOR:-}")"
    [ -n "$generator" ] || generator="$(trim "${SPEEDRUN_PROVIDER:-}")"
    provider="$(printf '%s' "${generator%%:*}" | tr '[:upper:]' '[:lower:]')"
    provider="$(trim "$provider")"
    case "$provider" in
        ollama | openai-compatible) return 0 ;;
        groq) has_value "${GROQ_API_KEY:-}" ;;
        openrouter) has_value "${OPENROUTER_API_KEY:-}" ;;
        openai) has_value "${OPENAI_API_KEY:-}" ;;
        *) return 1 ;;
    esac
}

if provider_ready; then
    exit 0
fi

user_message='speed-run: no model provider is configured, so its tools will fail. Get a free key at https://cloud.cerebras.ai and set CEREBRAS_API_KEY, either in the \"env\" block of ~/.claude/settings.json or with export in your shell profile (~/.bashrc, ~/.zshrc), then restart Claude Code. No key? Use a local server instead: SPEEDRUN_PROVIDER=ollama:<model> for Ollama, or SPEEDRUN_PROVIDER=openai-compatible:<model> plus SPEEDRUN_OPENAI_COMPATIBLE_URL for any OpenAI-compatible server.'
model_note='The speed-run plugin has no model provider configured (CEREBRAS_API_KEY is not set, and SPEEDRUN_PROVIDER / SPEEDRUN_GENERATOR name no provider that works without it). Every mcp__speed-run__* generation, turbo or judge call will fail until the user sets one and restarts. If the user asks for speed-run, call mcp__speed-run__check_status first: it diagnoses the setup and returns a setup_hint. Do not retry failing speed-run calls in a loop.'

printf '{"systemMessage": "%s", "hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": "%s"}}\n' \
    "$user_message" "$model_note"
