"""Streaming a generator reply to disk (loop.codegen) against the scripted server: files, truncation, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedrun.config import Settings
from speedrun.errors import FileProtocolError, InputError, ProviderError
from speedrun.loop.codegen import generate_and_write, read_context_files
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
async def test_files_land_on_disk_while_the_stream_is_still_running(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    out = tmp_path / "out"
    first_body = "def add(a, b):\n    return a + b\n"
    second_body = "".join(f"LINE_{i} = {i}\n" for i in range(40))
    fake_llm.script(
        Reply(
            content=block("pkg/calc.py", first_body) + block("pkg/data.py", second_body),
            chunk_size=16,
            chunk_delay=0.01,
        )
    )
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
        ("pkg/calc.py", "calc.py", 2, "created"),
        ("pkg/data.py", "data.py", 40, "created"),
    ]
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
async def test_truncated_reply_asks_for_the_rest_and_completes_it(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    done = block("one.py", "ONE = 1\n")
    fake_llm.script(
        Reply(content=done + '<FILE path="two.py">\ndef two():\n    return', finish_reason="length"),
        # The follow-up also re-sends one.py, against the instructions: the first copy stays, quietly.
        Reply(
            content=block("one.py", "ONE = 'again'\n")
            + block("two.py", "def two():\n    return 2\n")
            + block("three.py", "THREE = 3\n")
        ),
    )
    on_disk_when_written: dict[str, set[str]] = {}

    async def on_file(outcome: WrittenFile | FileError) -> None:
        on_disk_when_written[outcome.path] = set(files_under(tmp_path))

    result = await generate_and_write(settings, "x", tmp_path, on_file=on_file)

    first, second = fake_llm.chat_requests()
    follow_up = second.body["messages"]
    assert follow_up[: len(first.body["messages"])] == first.body["messages"]
    assert follow_up[-2]["role"] == "assistant" and "def two():" in follow_up[-2]["content"]
    assert "two.py" in follow_up[-1]["content"] and "one.py" in follow_up[-1]["content"]
    assert "two.py" not in on_disk_when_written["one.py"]  # the half file was never written as if complete
    assert files_under(tmp_path) == {
        "one.py": "ONE = 1\n",
        "two.py": "def two():\n    return 2\n",
        "three.py": "THREE = 3\n",
    }
    assert result.status == "ok" and result.report.errors == []
    assert [e.finish_reason for e in result.entries] == ["length", "stop"]


@pytest.mark.anyio
async def test_truncated_twice_lists_the_file_as_an_error(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    cut = '<FILE path="big.py">\nBIG = [\n    1,\n'
    fake_llm.script(
        Reply(content=block("small.py", "SMALL = 1\n") + cut, finish_reason="length"),
        Reply(content=cut + "    2,\n", finish_reason="length"),
        "never asked",
    )

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
    fake_llm.script(
        Reply(content=block("a.py", "A = 1\n") + '<FILE path="b.py">\nB = ', finish_reason="length"),
        block("c.py", "C = 3\n"),
    )  # the model ignores the request to resend b.py

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"a.py": "A = 1\n", "c.py": "C = 3\n"}
    assert [e.path for e in result.report.errors] == ["b.py"]
    assert result.status == "partial"


@pytest.mark.anyio
async def test_stream_broken_mid_file_is_not_spliced_with_the_fallback(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    with FakeLLM() as backup:
        make_settings(clean_env, fake_llm)
        # 1000: the smallest value read as milliseconds (smaller ones mean seconds).
        for name, value in {
            "GENERATION_TIMEOUT": "1000",
            "SPEEDRUN_MAX_RETRIES": "0",
            "SPEEDRUN_GENERATOR_FALLBACK": "openai-compatible:fake-model",
            "SPEEDRUN_OPENAI_COMPATIBLE_URL": backup.base_url,
        }.items():
            clean_env.setenv(name, value)
        settings = Settings()
        slow = block("one.py", "ONE = 1\n") + block("two.py", "TWO = [\n" + "    1,\n" * 200 + "]\n")
        fake_llm.script(Reply(content=slow, chunk_size=10, chunk_delay=0.03))  # ~4 s: cut by the 1 s deadline
        backup.script(block("one.py", "ONE = 1\n") + block("two.py", "TWO = 2\n"))

        with pytest.raises(ProviderError) as info:
            await generate_and_write(settings, "x", tmp_path)

        assert "GENERATION_TIMEOUT=1000" in str(info.value)
        assert files_under(tmp_path) == {"one.py": "ONE = 1\n"}  # no half-primary, half-fallback two.py
        assert backup.chat_requests() == []


@pytest.mark.anyio
async def test_refused_paths_are_reported_and_the_rest_written(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    out = tmp_path / "project"
    fake_llm.script(
        block("../escape.py", "X = 1\n")
        + block("/etc/evil.py", "X = 2\n")
        + block(".git/hooks/pre-commit", "rm -rf /\n")
        + block("good.py", "GOOD = 1\n")
    )

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
async def test_reply_without_file_blocks_is_an_error_quoting_its_start(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script("Sorry, I cannot help with that.")

    with pytest.raises(FileProtocolError) as info:
        await generate_and_write(settings, "x", tmp_path)

    assert "no file blocks" in str(info.value)
    assert "'Sorry, I cannot help with that.'" in str(info.value)
    assert files_under(tmp_path) == {}

    # A long reply in another shape: the quote is bounded and escaped, never the whole reply.
    fake_llm.script("Here is the code:\n```python\n" + "print('spam')\n" * 2000 + "```\n")
    with pytest.raises(FileProtocolError) as info:
        await generate_and_write(settings, "x", tmp_path)
    message = str(info.value)
    assert "no file blocks" in message and "Here is the code:\\n```python\\nprint" in message and "(cut)" in message
    assert len(message) < 500
    assert files_under(tmp_path) == {}


@pytest.mark.anyio
async def test_every_block_refused_is_status_error_with_reasons(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("../escape.py", "X = 1\n"))

    result = await generate_and_write(settings, "x", tmp_path / "out")

    assert result.status == "error"
    assert [e.path for e in result.report.errors] == ["../escape.py"]
    assert files_under(tmp_path) == {}


@pytest.mark.anyio
async def test_context_files_reach_the_model_and_outside_ones_are_refused(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
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


# --- real-model reply shapes, written to disk ------------------------------------------------------------

MESSY_REPLY = (
    "\ufeffSure! Here are the files.\r\n"
    'Here it is: <file path="pkg/__init__.py"></file>\r\n'  # lowercase, empty, prose before it on its line
    '<FILE lang="python" path=pkg/core.py>\r\n'  # unquoted path, reordered attributes, CRLF
    'END = "</FILE>"\r\n'
    "def close():\r\n"
    "    return END</FILE><FILE\r\n  path='pkg/\ufeffutil.py'>\r\n"  # closes on a code line; next tag split
    "X = 1\r\n</FILE> Done with util!\r\n"
    '<FILE path="a.txt">alpha</FILE><FILE path="b.txt">beta</FILE>\r\n'  # two one-line files on one line
    "## FILE: notes.md\r\n```markdown\r\n# Notes\r\n```\r\n"  # a heading-and-fence block after tagged ones
    "Let me know if you need anything else."
)
MESSY_FILES = {
    "pkg/__init__.py": "",
    "pkg/core.py": 'END = "</FILE>"\r\ndef close():\r\n    return END\n',
    "pkg/util.py": "X = 1\r\n",
    "a.txt": "alpha\n",
    "b.txt": "beta\n",
    "notes.md": "# Notes\r\n",
}


@pytest.mark.anyio
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 4096])
async def test_messy_real_model_reply_writes_exactly_the_right_files(
    clean_env, fake_llm: FakeLLM, tmp_path: Path, chunk_size: int
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content=MESSY_REPLY, chunk_size=chunk_size))

    result = await generate_and_write(settings, "x", tmp_path)

    on_disk = {
        p.relative_to(tmp_path).as_posix(): p.read_bytes().decode() for p in sorted(tmp_path.rglob("*")) if p.is_file()
    }
    assert on_disk == MESSY_FILES
    assert result.status == "ok" and result.report.errors == [] and result.warnings == []


@pytest.mark.anyio
async def test_unclosed_last_block_at_a_normal_end_is_written_with_a_warning(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("a.py", "A = 1\n") + '<FILE path="b.py">\ndef b():\n    return 2\n')

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"a.py": "A = 1\n", "b.py": "def b():\n    return 2\n"}
    assert result.status == "ok"
    assert len(result.warnings) == 1 and "'b.py'" in result.warnings[0] and "no closing </FILE>" in result.warnings[0]


@pytest.mark.anyio
async def test_nested_tags_and_a_path_with_a_newline_are_written_and_said(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script('<FILE path="src/\n  a.py">\nA = 1\n<FILE path="b.py">\nB = 2\n</FILE>\n</FILE>\n')

    result = await generate_and_write(settings, "x", tmp_path)

    assert files_under(tmp_path) == {"src/a.py": "A = 1\n", "b.py": "B = 2\n</FILE>\n"}
    assert len(result.warnings) == 3
    assert [w.split(":")[0] for w in result.warnings] == ["'src/\\n  a.py'", "'src/a.py'", "'b.py'"]


@pytest.mark.anyio
async def test_lone_surrogates_in_the_reply_do_not_crash_and_the_rest_is_written(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("bad.py", "X = '\ud800'\n") + block("good.py", "GOOD = 1\n"))

    result = await generate_and_write(settings, "x", tmp_path)

    # The gateway may turn the surrogate into U+FFFD, or pass it on for the writer to refuse; never a crash.
    on_disk = files_under(tmp_path)
    assert on_disk["good.py"] == "GOOD = 1\n"
    if "bad.py" in on_disk:
        assert on_disk["bad.py"] == "X = '\ufffd'\n" and result.status == "ok"
    else:
        assert [e.path for e in result.report.errors] == ["bad.py"] and result.status == "partial"


# --- allow_paths -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_allow_paths_lets_only_the_named_protected_file_through(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    reply = block(".github/workflows/ci.yml", "on: push\n") + block(".github/workflows/other.yml", "on: push\n")
    fake_llm.script(reply, reply)

    refused = await generate_and_write(settings, "x", tmp_path / "a")
    allowed = await generate_and_write(settings, "x", tmp_path / "b", allow_paths=[".github/workflows/ci.yml"])

    assert files_under(tmp_path / "a") == {}
    assert {e.path for e in refused.report.errors} == {".github/workflows/ci.yml", ".github/workflows/other.yml"}
    assert files_under(tmp_path / "b") == {".github/workflows/ci.yml": "on: push\n"}
    assert [e.path for e in allowed.report.errors] == [".github/workflows/other.yml"]


@pytest.mark.anyio
async def test_speedrun_allow_paths_setting_is_honoured(clean_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    make_settings(clean_env, fake_llm)
    clean_env.setenv("SPEEDRUN_ALLOW_PATHS", ".gitlab-ci.yml")
    fake_llm.script(block(".gitlab-ci.yml", "test: {}\n") + block(".github/workflows/ci.yml", "on: push\n"))

    result = await generate_and_write(Settings(), "x", tmp_path, allow_paths=[])

    assert files_under(tmp_path) == {".gitlab-ci.yml": "test: {}\n"}
    assert [e.path for e in result.report.errors] == [".github/workflows/ci.yml"]


# --- nothing blocks the event loop (Studio: langgraph dev refuses blocking calls) ------------------------------


def studio_blockbuster():
    """A BlockBuster that refuses what `langgraph dev` refuses, for calls made from speedrun's code."""
    blockbuster = pytest.importorskip("blockbuster")
    bb = blockbuster.BlockBuster(scanned_modules=["speedrun"])
    # langgraph dev lets these through (langgraph_runtime_inmem's queue); everything else blocks the run.
    for name in [n for n in bb.functions if n.startswith("os.path.")] + [
        "os.stat",
        "os.listdir",
        "os.remove",
        "io.BufferedReader.read",
        "io.BufferedWriter.write",
        "io.TextIOWrapper.read",
        "io.TextIOWrapper.write",
        "threading.Lock.acquire",
    ]:
        bb.functions.pop(name, None)
    return bb


@pytest.mark.anyio
async def test_generate_and_write_does_no_blocking_io_on_the_event_loop(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("warm.py", "W = 1\n"))
    await generate_and_write(settings, "warm up the gateway's imports", tmp_path / "warm")
    out = tmp_path / "new" / "dir"
    (out / "pkg").mkdir(parents=True)
    (out / "pkg" / "old.py").write_text("OLD = 1\n")  # modified: backed up first
    fake_llm.script(block("pkg/old.py", "OLD = 2\n") + block("pkg/sub/new.py", "NEW = 1\n") + block("../x.py", "X\n"))

    bb = studio_blockbuster()
    bb.activate()
    try:
        result = await generate_and_write(settings, "x", out)
    finally:
        bb.deactivate()

    assert files_under(out / "pkg") == {"old.py": "OLD = 2\n", "sub/new.py": "NEW = 1\n"}
    assert [f.action for f in result.report.files_written] == ["modified", "created"]
    assert [e.path for e in result.report.errors] == ["../x.py"]


@pytest.mark.anyio
async def test_generate_node_does_no_blocking_io_on_the_event_loop(
    clean_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from speedrun.config import RunContext
    from speedrun.nodes.generate import generate
    from speedrun.state.turbo import Contract, TurboState

    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(block("warm.py", "W = 1\n"))
    await generate_and_write(settings, "warm up the gateway's imports", tmp_path / "warm")
    out = tmp_path / "ws"
    out.mkdir()
    (out / "models.py").write_text("class Point:\n    CONTEXT_MARKER = 1\n")
    spec = Contract(data_contract="Point", api_contract="area()", algorithm="multiply", rules="write shapes.py")
    state = TurboState(contract="x", output_dir=str(out), context_files=["models.py"], spec=spec)
    fake_llm.script(block("shapes.py", "from models import Point\n") + '<FILE path="b.py">\nB = 1\n')
    runtime = SimpleNamespace(context=RunContext(settings=settings), stream_writer=None)

    bb = studio_blockbuster()
    bb.activate()
    try:
        update = await generate(state, runtime)
    finally:
        bb.deactivate()

    assert files_under(out) == {
        "models.py": "class Point:\n    CONTEXT_MARKER = 1\n",
        "shapes.py": "from models import Point\n",
        "b.py": "B = 1\n",
    }
    assert "CONTEXT_MARKER" in fake_llm.chat_requests()[-1].body["messages"][-1]["content"]
    assert [f.path for f in update["files"]] == ["shapes.py", "b.py"]
    assert len(update["warnings"]) == 1 and "'b.py'" in update["warnings"][0]


# --- context files ---------------------------------------------------------------------------------------------


def test_context_file_that_is_a_fifo_is_refused_as_not_a_regular_file(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="'pipe' is not a regular file"):
        read_context_files(["pipe"], tmp_path, [tmp_path])  # returns at once: no writer is waited for
    with pytest.raises(InputError, match="'folder' is a directory"):
        read_context_files(["folder"], tmp_path, [tmp_path])
    with pytest.raises(InputError, match="'missing.py' does not exist"):
        read_context_files(["missing.py"], tmp_path, [tmp_path])


def test_huge_context_file_is_not_read_whole(tmp_path: Path) -> None:
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("needs /proc/self/io to count the bytes read")

    def bytes_read() -> int:
        return int(next(line for line in io_stats.read_text().splitlines() if line.startswith("rchar:")).split()[1])

    huge = tmp_path / "huge.log"
    with huge.open("wb") as fh:
        fh.write(b"HEAD-MARKER\n")
        fh.truncate(256 * 1024 * 1024)  # 256 MiB, sparse: cheap to make, costly to read whole

    before = bytes_read()
    context = read_context_files(["huge.log"], tmp_path, [tmp_path])
    spent = bytes_read() - before

    assert "HEAD-MARKER" in context and "... (truncated)" in context
    assert spent < 2 * 1024 * 1024, f"read {spent:,} bytes of a 256 MiB file to use 100,000 characters"
