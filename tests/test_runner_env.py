"""Variables a run adds to the tests' environment: they reach the command, and secret-looking ones never do."""

from __future__ import annotations

import pytest

from speedrun.errors import InputError
from speedrun.sandbox import run_tests
from speedrun.state.turbo import TurboInput


@pytest.mark.anyio
async def test_extra_env_reaches_the_test_command_after_scrubbing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDRUN_PORT_BASE", "1")  # the caller's own value is scrubbed; the run's is what counts
    report = await run_tests(
        'test "$SPEEDRUN_RUNNER $SPEEDRUN_PORT_BASE" = "2 20200"',
        tmp_path,
        mode="none",
        extra_env={"SPEEDRUN_RUNNER": "2", "SPEEDRUN_PORT_BASE": "20200"},
    )
    assert report.exit_code == 0, report.output_tail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("OPENAI_API_KEY", "x", "looks like a secret"),
        ("GITHUB_TOKEN", "x", "looks like a secret"),
        ("lower-case", "x", "not a valid name"),
        ("DATABASE_URL", "postgres://u:hunter2@db/x", "without credentials"),
    ],
)
async def test_secret_looking_or_bad_extra_env_is_refused(tmp_path, name, value, says):
    with pytest.raises(InputError, match=says) as caught:
        await run_tests("true", tmp_path, mode="none", extra_env={name: value})
    assert "hunter2" not in str(caught.value)


def test_turbo_input_carries_the_test_env():
    given = TurboInput(contract="RULES:\nx", output_dir="/tmp/x", test_env={"SPEEDRUN_RUNNER": "1"})
    assert given.test_env == {"SPEEDRUN_RUNNER": "1"} and TurboInput(contract="x", output_dir="/x").test_env == {}
