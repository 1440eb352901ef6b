"""Streaming a generator reply to disk (speedrun.codegen) against the scripted server: files, truncation, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedrun.codegen import generate_and_write, read_context_files
from speedrun.config import Settings
from speedrun.errors import InputError, ProviderError
from speedrun.state import FileError, WrittenFile
from tests.fake_llm import FakeLLM, Reply


def make_settings(env: pytest.MonkeyPatch, fake: FakeLLM) -> Settings:
    env.setenv("CEREBRAS_API_KEY", "csk-codegen-test-key")
    env.setenv("CEREBRAS_URL", fake.base_url)
    env.setenv("CEREBRAS_MODEL", "fake-model")
    return Settings()


def block(path: str, body: str) -> str:
    return f'<FILE path="{path}">\n{body}</FILE>\n'


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.anyio
async def test_files_land_on_disk_while_the_stream_is_still_running(clean_env, fake_llm: FakeLLM,
                                                                    tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    out = tmp_path / "out"
    first_body = "def add(a, b):\n    return a + b\n"
    second_body = "".join(f"LINE_{i} = {i}\n" for i in range(40))
    fake_llm.script(Reply(content=block("pkg/calc.py", first_body) + block("pkg/data.py", second_body),
                          chunk_size=16, chunk_delay=0.01))
    seen: list[tuple[str, bool, bool]] = []  # (path, on disk now, request still streaming)

    async def on_file(outcome: WrittenFile | FileError) -> None:
        assert isinstance(outcome, WrittenFile), outcome
        (req,) = fake_llm.chat_requests()
        seen.append((outcome.path, (out / outcome.path).is_file(), req.finished is None))

    result = await generate_and_write(settings, "write a calculator", out, on_file=on_file)

    assert seen[0] == ("pkg/calc.py", True, True)  # first file written before the server finished sending
    assert [s[0] for s in seen] == ["pkg/calc.py", "pkg/data.py"]
    assert files_under(out) == {"pkg/calc.py": first_body, "pkg/data.py": second_body}
    assert result.status == "ok"
    assert [(f.path, f.filename, f.lines, f.action) for f in result.report.files_written] == [
        ("pkg/calc.py", "calc.py", 2, "created"), ("pkg/data.py", "data.py", 40, "created")]
    assert result.report.errors == []
    assert result.entries[0].finish_reason == "stop"
    assert fake_llm.chat_requests()[0].body["stream"] is True


@pytest.mark.anyio
async def test_closing_tag_inside_code_does_not_cut_the_file(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    body = 'END = "</FILE>"\nDOC = """\nTRIPLE_BACKTICK\n"""\n\n\ndef tag():\n    return END\n'
    fake_llm.script(Reply(content=block("tags.py", body), chunk_size=5))

    result = await generate_and_write(settings, "x", tmp_path)

    assert (tmp_path / "tags.py").read_text() == body.replace("TRIPLE_BACKTICK", "```")
    assert result.report.files_written[0].lines == 8


@pytest.mark.anyio
async def test_fallback_marker_format_is_written(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script("### FILE: src/one.py\n```python\nONE = 1\n```\n\n### FILE: src/two.py\n```python\nTWO = 2\n```\n")

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"src/one.py": "ONE = 1\n", "src/two.py": "TWO = 2\n"}
    assert result.status == "ok"


@pytest.mark.anyio
async def test_truncated_reply_asks_for_the_rest_and_completes_it(clean_env, fake_llm: FakeLLM,
                                                                  tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    done = block("one.py", "ONE = 1\n")
    fake_llm.script(
        Reply(content=done + '<FILE path="two.py">\ndef two():\n    return', finish_reason="length"),
        # The follow-up also re-sends one.py, against the instructions: the first copy stays, quietly.
        Reply(content=block("one.py", "ONE = 'again'\n") + block("two.py", "def two():\n    return 2\n")
              + block("three.py", "THREE = 3\n")),
    )
    on_disk_when_written: dict[str, set[str]] = {}

    async def on_file(outcome: WrittenFile | FileError) -> None:
        on_disk_when_written[outcome.path] = set(files_under(tmp_path))

    result = await generate_and_write(settings, "x", tmp_path, on_file=on_file)

    first, second = fake_llm.chat_requests()
    follow_up = second.body["messages"]
    assert follow_up[:len(first.body["messages"])] == first.body["messages"]
    assert follow_up[-2]["role"] == "assistant" and "def two():" in follow_up[-2]["content"]
    assert "two.py" in follow_up[-1]["content"] and "one.py" in follow_up[-1]["content"]
    assert "two.py" not in on_disk_when_written["one.py"]  # the half file was never written as if complete
    assert files_under(tmp_path) == {"one.py": "ONE = 1\n", "two.py": "def two():\n    return 2\n",
                                     "three.py": "THREE = 3\n"}
    assert result.status == "ok" and result.report.errors == []
    assert [e.finish_reason for e in result.entries] == ["length", "stop"]


@pytest.mark.anyio
async def test_truncated_twice_lists_the_file_as_an_error(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    cut = '<FILE path="big.py">\nBIG = [\n    1,\n'
    fake_llm.script(Reply(content=block("small.py", "SMALL = 1\n") + cut, finish_reason="length"),
                    Reply(content=cut + "    2,\n", finish_reason="length"), "never asked")

    result = await generate_and_write(settings, "x", tmp_path)

    assert len(fake_llm.chat_requests()) == 2
    assert files_under(tmp_path) == {"small.py": "SMALL = 1\n"}
    assert [e.path for e in result.report.errors] == ["big.py"]
    assert "token limit" in result.report.errors[0].error
    assert "max_tokens" in result.report.errors[0].error  # says how to fix it
    assert result.status == "partial"


@pytest.mark.anyio
async def test_file_cut_off_and_never_resent_is_an_error(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content=block("a.py", "A = 1\n") + '<FILE path="b.py">\nB = ', finish_reason="length"),
                    block("c.py", "C = 3\n"))  # the model ignores the request to resend b.py

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"a.py": "A = 1\n", "c.py": "C = 3\n"}
    assert [e.path for e in result.report.errors] == ["b.py"]
    assert result.status == "partial"


@pytest.mark.anyio
async def test_stream_broken_mid_file_is_not_spliced_with_the_fallback(clean_env, fake_llm: FakeLLM,
                                                                       tmp_path: Path) -> None:
    with FakeLLM() as backup:
        make_settings(clean_env, fake_llm)
        for name, value in {"GENERATION_TIMEOUT": "500", "SPEEDRUN_MAX_RETRIES": "0",
                            "SPEEDRUN_GENERATOR_FALLBACK": "openai-compatible:fake-model",
                            "SPEEDRUN_OPENAI_COMPATIBLE_URL": backup.base_url}.items():
            clean_env.setenv(name, value)
        settings = Settings()
        slow = block("one.py", "ONE = 1\n") + block("two.py", "TWO = [\n" + "    1,\n" * 60 + "]\n")
        fake_llm.script(Reply(content=slow, chunk_size=10, chunk_delay=0.03))  # ~2 s: cut by the 0.5 s deadline
        backup.script(block("one.py", "ONE = 1\n") + block("two.py", "TWO = 2\n"))

        with pytest.raises(ProviderError) as info:
            await generate_and_write(settings, "x", tmp_path)

        assert "GENERATION_TIMEOUT=500" in str(info.value)
        assert files_under(tmp_path) == {"one.py": "ONE = 1\n"}  # no half-primary, half-fallback two.py
        assert backup.chat_requests() == []


@pytest.mark.anyio
async def test_refused_paths_are_reported_and_the_rest_written(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    out = tmp_path / "project"
    fake_llm.script(block("../escape.py", "X = 1\n") + block("/etc/evil.py", "X = 2\n")
                    + block(".git/hooks/pre-commit", "rm -rf /\n") + block("good.py", "GOOD = 1\n"))

    result = await generate_and_write(settings, "x", out)

    assert files_under(tmp_path) == {"project/good.py": "GOOD = 1\n"}
    reasons = {e.path: e.error for e in result.report.errors}
    assert set(reasons) == {"../escape.py", "/etc/evil.py", ".git/hooks/pre-commit"}
    assert "'..'" in reasons["../escape.py"]
    assert "absolute" in reasons["/etc/evil.py"]
    assert ".git" in reasons[".git/hooks/pre-commit"]
    assert result.status == "partial"


@pytest.mark.anyio
async def test_duplicate_path_in_one_reply_is_reported(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("dup.py", "FIRST = 1\n") + block("dup.py", "SECOND = 2\n"))

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"dup.py": "FIRST = 1\n"}
    assert [(e.path, "duplicate" in e.error) for e in result.report.errors] == [("dup.py", True)]
    assert result.status == "partial"


@pytest.mark.anyio
async def test_nothing_written_is_status_error(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script("Sorry, I cannot help with that.")

    result = await generate_and_write(settings, "x", tmp_path)

    assert result.status == "error"
    assert files_under(tmp_path) == {}


@pytest.mark.anyio
async def test_context_files_reach_the_model_and_outside_ones_are_refused(clean_env, fake_llm: FakeLLM,
                                                                          tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "models.py").write_text("class Point:\n    CONTEXT_MARKER = 1\n")
    (tmp_path / "secret.txt").write_text("PRIVATE-OUTSIDE-ROOT\n")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")

    for outside in ["../secret.txt", str(tmp_path / "secret.txt"), "link.txt"]:
        with pytest.raises(InputError, match="outside the allowed roots"):
            read_context_files([outside], root, [root])

    context = read_context_files(["lib/models.py"], root, [root])
    fake_llm.script(block("lib/use.py", "from lib.models import Point\n"))
    await generate_and_write(settings, "use Point", root, context=context)

    user = fake_llm.chat_requests()[0].body["messages"][-1]["content"]
    assert "CONTEXT_MARKER" in user and "lib/models.py" in user and "use Point" in user
    assert "PRIVATE" not in user


@pytest.mark.anyio
async def test_empty_prompt_is_refused_before_any_request(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    with pytest.raises(InputError, match="prompt is empty"):
        await generate_and_write(settings, "  ", tmp_path)
    assert fake_llm.requests == []
