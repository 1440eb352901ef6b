"""apply_edits on real files: exact application, tolerant matching, refusals, backups, line endings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speedrun.loop.edits import apply_edits, closest_match, numbered
from speedrun.state.edits import Edit, EditOutcome, FixPlan

APP = """\
def add(a, b):
    return a - b


def mul(a, b):
    return a + b
"""

# More than 8 non-blank lines, so the whole-file rule applies.
BIG = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(10))


def write(root: Path, rel: str, text: str, *, binary: bool = False) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if binary:
        p.write_bytes(text.encode())
    else:
        p.write_text(text)
    return p


def one(root: Path, path: str, search: str, replace: str, **kw) -> EditOutcome:
    [outcome] = apply_edits(root, [Edit(path=path, search=search, replace=replace)], **kw)
    return outcome


def test_single_edit_applied_exactly(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    o = one(tmp_path, "app.py", "    return a - b\n", "    return a + b\n")
    assert o.status == "applied", o.message
    assert "line 2" in o.message
    assert p.read_text() == APP.replace("a - b", "a + b")


def test_two_edits_on_one_file_see_each_other(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    edits = [
        Edit(path="app.py", search="return a - b", replace="return a + b  # fixed"),
        # Only exists after the first edit.
        Edit(path="app.py", search="return a + b  # fixed", replace="return b + a"),
        Edit(path="app.py", search="def mul(a, b):\n    return a + b", replace="def mul(a, b):\n    return a * b"),
    ]
    outcomes = apply_edits(tmp_path, edits)
    assert [o.status for o in outcomes] == ["applied"] * 3, [o.message for o in outcomes]
    assert p.read_text() == APP.replace("a - b", "b + a").replace("return a + b\n", "return a * b\n")
    # One write, one backup, shared by all edits of the file.
    assert len({o.backup for o in outcomes}) == 1


def test_edits_on_two_files(tmp_path: Path) -> None:
    a = write(tmp_path, "src/a.py", "X = 1\n")
    b = write(tmp_path, "src/b.py", "Y = 2\n")
    outcomes = apply_edits(
        tmp_path,
        [
            Edit(path="src/a.py", search="X = 1", replace="X = 10"),
            Edit(path="./src/b.py", search="Y = 2", replace="Y = 20"),
        ],
    )
    assert [o.status for o in outcomes] == ["applied", "applied"]
    assert a.read_text() == "X = 10\n"
    assert b.read_text() == "Y = 20\n"


def test_not_found_shows_closest_region_with_line_numbers(tmp_path: Path) -> None:
    p = write(tmp_path, "big.py", BIG)
    # f6 lives on lines 19-20; the fixer got the value wrong.
    o = one(tmp_path, "big.py", "def f6():\n    return 66\n", "def f6():\n    return 6.0\n")
    assert o.status == "not_found"
    assert o.closest is not None
    assert "  19| def f6():" in o.closest
    assert "  20|     return 6" in o.closest
    assert "  17|" in o.closest and "  22|" in o.closest  # two lines of context each side
    assert "16|" not in o.closest and "23|" not in o.closest
    assert "line 19" in o.message and "exactly" in o.message
    assert p.read_text() == BIG


def test_not_found_in_missing_file(tmp_path: Path) -> None:
    o = one(tmp_path, "nope.py", "x = 1", "x = 2")
    assert o.status == "not_found"
    assert "does not exist" in o.message
    assert not (tmp_path / "nope.py").exists()


def test_tolerant_match_trailing_spaces(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", "def f():   \n    return 1  \n\nx = f()\n")
    o = one(tmp_path, "app.py", "def f():\n    return 1\n", "def f():\n    return 2\n")
    assert o.status == "applied", o.message
    assert "trailing whitespace" in o.message
    assert p.read_text() == "def f():\n    return 2\n\nx = f()\n"


def test_tolerant_match_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", "a = 1\r\nb = 2\r\nc = 3\r\n", binary=True)
    o = one(tmp_path, "app.py", "a = 1\nb = 2\n", "a = 1\nb = 20\nb2 = 21\n")
    assert o.status == "applied", o.message
    assert p.read_bytes() == b"a = 1\r\nb = 20\r\nb2 = 21\r\nc = 3\r\n"


def test_crlf_file_exact_single_line_match_converts_replacement(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", "a = 1\r\nb = 2\r\n", binary=True)
    o = one(tmp_path, "app.py", "b = 2", "b = 3\nc = 4")
    assert o.status == "applied", o.message
    assert p.read_bytes() == b"a = 1\r\nb = 3\r\nc = 4\r\n"


def test_ambiguous_lists_both_lines(tmp_path: Path) -> None:
    text = APP.replace("return a + b", "return a - b")  # the same whole line at lines 2 and 6
    p = write(tmp_path, "app.py", text)
    o = one(tmp_path, "app.py", "    return a - b\n", "    return a + b\n")
    assert o.status == "ambiguous"
    assert "2 times" in o.message
    assert "lines 2, 6" in o.message
    assert "more surrounding lines" in o.message
    assert p.read_text() == text


def test_part_of_a_line_is_never_edited(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    o = one(tmp_path, "app.py", "(a, b):", "(a, b, c):")
    assert o.status == "not_found"
    assert "only part of line 1" in o.message and "whole lines" in o.message
    assert "   1| def add(a, b):" in (o.closest or "")
    assert p.read_text() == APP


def test_whole_file_replacement_refused_and_file_untouched(tmp_path: Path) -> None:
    p = write(tmp_path, "big.py", BIG)
    before = p.stat().st_mtime_ns
    o = one(tmp_path, "big.py", BIG, BIG.replace("return 3", "return 33"))
    assert o.status == "refused"
    assert "would replace most of big.py (20 of 20 lines)" in o.message
    assert "never regenerate a whole file" in o.message
    assert p.read_text() == BIG
    assert p.stat().st_mtime_ns == before
    assert not (tmp_path / ".speedrun").exists()


def test_large_share_refused_but_small_file_may_be_replaced(tmp_path: Path) -> None:
    big = write(tmp_path, "big.py", BIG)
    # 14 of 20 non-blank lines > 0.6
    part = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(7))
    assert one(tmp_path, "big.py", part, part.replace("return 1\n", "return 11\n")).status == "refused"
    assert big.read_text() == BIG
    # 4 of 20 is fine
    small_part = "def f1():\n    return 1\n\ndef f2():\n    return 2\n"
    o = one(tmp_path, "big.py", small_part, small_part.replace("return 2", "return 22"))
    assert o.status == "applied", o.message
    # A file with few lines may be rewritten in one edit.
    tiny = write(tmp_path, "tiny.py", "x = 1\ny = 2\n")
    assert one(tmp_path, "tiny.py", "x = 1\ny = 2\n", "x = 3\ny = 4\n").status == "applied"
    assert tiny.read_text() == "x = 3\ny = 4\n"


def test_empty_search_creates_new_file(tmp_path: Path) -> None:
    o = one(tmp_path, "pkg/new.py", "", "VALUE = 1\n")
    assert o.status == "applied", o.message
    assert (tmp_path / "pkg/new.py").read_text() == "VALUE = 1\n"
    assert o.backup is None


def test_empty_search_then_edit_on_the_created_file(tmp_path: Path) -> None:
    outcomes = apply_edits(
        tmp_path,
        [
            Edit(path="new.py", search="", replace="A = 1\n"),
            Edit(path="new.py", search="A = 1", replace="A = 2"),
            Edit(path="new.py", search="", replace="A = 3\n"),  # now it exists
        ],
    )
    assert [o.status for o in outcomes] == ["applied", "applied", "refused"]
    assert (tmp_path / "new.py").read_text() == "A = 2\n"


def test_empty_search_on_existing_file_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    o = one(tmp_path, "app.py", "", "print('hi')\n")
    assert o.status == "refused"
    assert "empty search text would replace the whole file" in o.message
    assert p.read_text() == APP


@pytest.mark.parametrize("path", ["../x.py", "/etc/passwd", "a/../../x.py", ".git/hooks/pre-commit"])
def test_unsafe_path_refused(tmp_path: Path, path: str) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    o = one(root, path, "", "boom\n")
    assert o.status == "refused"
    assert "unsafe path" in o.message
    assert not (tmp_path / "x.py").exists()
    o = one(root, path, "root", "toor")
    assert o.status == "refused"


def test_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write(outside, "s.py", "KEY = 1\n")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    o = one(root, "link/s.py", "KEY = 1", "KEY = 2")
    assert o.status == "refused"
    assert "outside the workspace" in o.message
    assert secret.read_text() == "KEY = 1\n"


def test_noop_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    o = one(tmp_path, "app.py", "return a - b", "return a - b")
    assert o.status == "refused"
    assert "changes nothing" in o.message
    assert p.read_text() == APP


def test_backup_of_modified_file(tmp_path: Path) -> None:
    p = write(tmp_path, "src/app.py", APP)
    o = one(tmp_path, "src/app.py", "return a - b", "return a + b")
    assert o.status == "applied"
    assert o.backup is not None
    backup = Path(o.backup)
    assert backup.is_file()
    assert backup.read_text() == APP
    assert p.read_text() != APP


def test_failed_write_marks_applied_edits_as_error(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    edits = [
        Edit(path="app.py", search="return a - b", replace="return a + b"),
        Edit(
            path="app.py",
            search="def mul(a, b):\n    return a + b\n",
            replace="def mul(a, b):\n    return a * b + " + "9" * 200 + "\n",
        ),
    ]
    outcomes = apply_edits(tmp_path, edits, max_file_bytes=len(APP) + 50)
    assert [o.status for o in outcomes] == ["error", "error"]
    assert all("byte cap" in o.message for o in outcomes)
    assert p.read_text() == APP


def test_one_failed_edit_does_not_block_others(tmp_path: Path) -> None:
    p = write(tmp_path, "app.py", APP)
    outcomes = apply_edits(
        tmp_path,
        [
            Edit(path="app.py", search="no such text", replace="x"),
            Edit(path="app.py", search="return a - b", replace="return a + b"),
        ],
    )
    assert [o.status for o in outcomes] == ["not_found", "applied"]
    assert "return a + b\n\n\ndef mul" in p.read_text()


def test_numbered_and_closest_match_helpers() -> None:
    text = "a\n\nc\nd\n"
    assert numbered(text) == "   1| a\n   2|\n   3| c\n   4| d"
    assert numbered(text, 3) == "   3| c\n   4| d"
    assert numbered(text, 2, 3) == "   2|\n   3| c"
    assert numbered("", 1) == ""
    line, excerpt = closest_match("x = 1\ny = 2\nz = 3\n", "y = 3", context=0)
    assert line == 2 and excerpt == "   2| y = 2"
    assert closest_match("", "y") is None


def test_fixplan_schema_has_descriptions_and_no_defaults() -> None:
    schema = FixPlan.model_json_schema()
    assert set(schema["required"]) == {"diagnosis", "edits"}
    edit = schema["$defs"]["Edit"]
    assert set(edit["required"]) == {"path", "search", "replace"}
    assert all("description" in f and "default" not in f for f in edit["properties"].values())


def test_many_small_edits_cannot_add_up_to_a_rewrite(tmp_path: Path) -> None:
    original = "".join(f"line_{n} = {n}\n" for n in range(20))
    (tmp_path / "big.py").write_text(original)
    edits = [Edit(path="big.py", search=f"line_{n} = {n}\n", replace=f"line_{n} = -{n}\n") for n in range(20)]
    outcomes = apply_edits(tmp_path, edits)
    statuses = [o.status for o in outcomes]
    assert statuses[:12] == ["applied"] * 12  # 12 of 20 lines is the 60 % share
    assert set(statuses[12:]) == {"refused"}
    assert "already replaced by earlier edits" in outcomes[12].message


# --------------------------------------------------------------------------------------------------
# The surgical_fix node: off the event loop, with short messages to the model
# --------------------------------------------------------------------------------------------------


def _fix_state(root: Path, files: dict[str, str]):
    from speedrun.state.records import TestFailure, TestReport, WrittenFile
    from speedrun.state.turbo import TurboState

    for rel, text in files.items():
        write(root, rel, text)
    report = TestReport(
        command="pytest -q",
        exit_code=1,
        failed=1,
        failures=[TestFailure(name="test_calc.py::test_add", message="assert -1 == 5", file="calc.py", line=2)],
    )
    written = [
        WrittenFile(path=rel, filename=rel, lines=text.count("\n"), action="created") for rel, text in files.items()
    ]
    return TurboState(
        contract="add(a, b) returns a + b", output_dir=str(root), test_command="pytest -q", files=written, tests=report
    )


def _runtime():
    from types import SimpleNamespace

    from speedrun.config import RunContext, Settings

    return SimpleNamespace(context=RunContext(Settings()), stream_writer=None)


@pytest.mark.anyio
async def test_surgical_fix_never_blocks_the_event_loop(speedrun_env, fake_llm, tmp_path: Path) -> None:
    """`langgraph dev` raises BlockingError for a blocking call inside a node; blockbuster is its detector."""
    from blockbuster import blockbuster_ctx

    from speedrun.nodes.surgical_fix import surgical_fix
    from tests.helpers import fix_reply

    root = tmp_path / "ws"
    state = _fix_state(
        root, {"calc.py": "def add(a, b):\n    return a - b\n", "test_calc.py": "from calc import add\n"}
    )
    fake_llm.script(
        fix_reply(("calc.py", "return a - b", "return a * b")),
        fix_reply(("calc.py", "return a-b", "return a+b")),  # not found: a retry, a second apply
        fix_reply(("calc.py", "return a * b", "return a + b")),
    )
    runtime = _runtime()
    # A first cycle warms the process as a running server is warm (the HTTP client's lazy imports read
    # package metadata, which is the LLM client's business); the cycle under watch must not block at all.
    await surgical_fix(state, runtime)
    with blockbuster_ctx():
        update = await surgical_fix(state, runtime)
    [cycle] = update["cycles"]
    assert [e.status for e in cycle.edits] == ["applied"]
    assert (root / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


@pytest.mark.anyio
async def test_retry_prompt_messages_and_excerpts_stay_short(speedrun_env, fake_llm, tmp_path: Path) -> None:
    from speedrun.loop.edits import MAX_CLOSEST_LINES, MAX_MESSAGE_CHARS
    from speedrun.nodes.surgical_fix import surgical_fix
    from tests.helpers import fix_reply, last_user_text

    body = "".join(f"    step_{i} = compute_something_long_named_{i}(value, other_value)\n" for i in range(60))
    calc = f"def add(a, b):\n{body}    return a - b\n"
    root = tmp_path / "ws"
    state = _fix_state(root, {"calc.py": calc, "test_calc.py": "from calc import add\n"})
    # A long search the model misremembered (every line differs a little) and a path far too long to echo.
    wrong = "".join(f"    step_{i} = compute_something_long_named_{i}(value)\n" for i in range(40))
    fake_llm.script(
        fix_reply(("calc.py", wrong, "    pass\n"), ("x/" * 200 + "calc.py", "a = 1", "a = 2")), fix_reply()
    )
    update = await surgical_fix(state, _runtime())

    retry = last_user_text(fake_llm.chat_requests()[1])
    assert "not found" in retry
    [cycle] = update["cycles"]
    assert all(len(e.message) <= MAX_MESSAGE_CHARS for e in cycle.edits)
    excerpt_rows = [line for line in retry.splitlines() if re.match(r"^ *\d+\| ", line)]
    assert 0 < len(excerpt_rows) <= MAX_CLOSEST_LINES
    problems = retry.split("Send corrected edits")[0]  # the rest is the fixed instructions and answer schema
    assert len(problems) < 2000, problems
    assert (root / "calc.py").read_text() == calc


def test_closest_region_in_a_big_file_is_found_by_its_words(tmp_path: Path) -> None:
    # 20,000 near-identical lines: scoring every window with difflib took over a minute here.
    text = "".join(f"    value_{i} = compute(value_{i - 1}, {i})\n" for i in range(20_000))
    p = write(tmp_path, "big.py", text)
    wrong = "".join(f"    valu_{i} = comp(value_{i - 1}, {i + 1})\n" for i in range(15_000, 15_030))
    o = one(tmp_path, "big.py", wrong, "    pass\n")
    assert o.status == "not_found"
    assert "most similar region starts at line 15001 " in o.message
    assert "15001|     value_15000 = compute(value_14999, 15000)" in (o.closest or "")
    assert p.read_text() == text


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"action": "edits", "edits": [{"path": "calc.py"}]}, "edit 1 is not valid (search: Field required"),
        ({"action": "edits", "edits": [{"path": "a.py", "search": "x", "replace": "y"}, 7]}, "edit 2 is not an object"),
        ({"action": "edits", "edits": "calc.py"}, "`edits` must be a list"),
    ],
)
def test_bad_client_edits_name_the_edit_in_plain_words(answer: dict, says: str) -> None:
    from speedrun.errors import InputError
    from speedrun.state.runs import ResumeAnswer

    with pytest.raises(InputError) as info:
        ResumeAnswer.read(answer)
    text = str(info.value)
    assert says in text
    assert "pydantic" not in text and "For further information" not in text and "validation error" not in text


def test_an_allowed_protected_file_can_be_edited_and_others_stay_refused(tmp_path: Path) -> None:
    # A user who let the run write .github/workflows/ci.yml must let the fixer repair it too.
    workflow = tmp_path / ".github" / "workflows" / "ci.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-lates\n")
    edit = Edit(
        path=".github/workflows/ci.yml", search="    runs-on: ubuntu-lates\n", replace="    runs-on: ubuntu-latest\n"
    )
    [refused] = apply_edits(tmp_path, [edit])
    assert refused.status == "refused" and workflow.read_text().endswith("ubuntu-lates\n")
    [applied] = apply_edits(tmp_path, [edit], allow_paths=[".github/workflows/ci.yml"])
    assert applied.status == "applied", applied.message
    assert workflow.read_text() == "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n"


def test_applied_edits_count_the_lines_really_replaced(tmp_path: Path) -> None:
    # A forgiven blank first line and a missing final newline are no lines of the file: they are not counted.
    p = tmp_path / "m.py"
    p.write_text("def f():\n    x = 1\n    y = 2\n")
    [o] = apply_edits(tmp_path, [Edit(path="m.py", search="\n    x = 1\n", replace="    x = 10\n    z = 0")])
    assert o.status == "applied", o.message
    assert p.read_text() == "def f():\n    x = 10\n    z = 0\n    y = 2\n"
    assert (o.lines_removed, o.lines_added) == (1, 2)
    empty = tmp_path / "e.py"
    empty.write_text("")
    [filled] = apply_edits(tmp_path, [Edit(path="e.py", search="", replace="a = 1\nb = 2\n")])
    assert (filled.status, filled.lines_removed, filled.lines_added) == ("applied", 0, 2)
