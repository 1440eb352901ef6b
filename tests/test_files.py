"""Tests for speedrun.files: parsing the three reply formats, streaming, and safe writing."""

from __future__ import annotations

import os
import random
import re
import stat
from pathlib import Path

import pytest

from speedrun.errors import FileProtocolError
from speedrun.files import SafeWriter, normalize_relpath
from speedrun.loop.reply_parser import FileStreamParser, parse_files
from speedrun.state.records import FileError, GeneratedFile, WrittenFile

# ---------------------------------------------------------------------------------------------------
# Parsing: formats
# ---------------------------------------------------------------------------------------------------

PRIMARY = """Here are the files.

<FILE path="src/app.py">
def main():
    return 1
</FILE>

Some prose in between.
<FILE path='tests/test_app.py'>
from src.app import main


def test_main():
    assert main() == 1
</FILE>
Done.
"""


def as_dict(files: list[GeneratedFile]) -> dict[str, str]:
    return {f.path: f.content for f in files}


def test_primary_format_two_files_prose_ignored():
    files, unfinished = parse_files(PRIMARY)
    assert unfinished is None
    assert [f.path for f in files] == ["src/app.py", "tests/test_app.py"]
    assert files[0].content == "def main():\n    return 1\n"
    assert files[1].content == "from src.app import main\n\n\ndef test_main():\n    assert main() == 1\n"


def test_primary_tag_variants_spaces_and_quotes():
    text = "<FILE  path = 'a.py' >\nx = 1\n</FILE>\n<FILE path=\"b.py\">\ny = 2\n  </FILE>  \n"
    assert as_dict(parse_files(text)[0]) == {"a.py": "x = 1\n", "b.py": "y = 2\n"}


def test_primary_content_on_opening_line():
    files, _ = parse_files('<FILE path="a.py">import os\nprint(os.sep)\n</FILE>\n')
    assert files[0].content == "import os\nprint(os.sep)\n"


def test_primary_one_line_file():
    files, _ = parse_files('<FILE path="a.txt">hello</FILE>\n<FILE path="b.txt">\nb\n</FILE>\n')
    assert as_dict(files) == {"a.txt": "hello\n", "b.txt": "b\n"}


def test_primary_inside_wrapping_xml_fence():
    text = '```xml\n<FILE path="a.py">\nx = 1\n</FILE>\n```\n'
    files, unfinished = parse_files(text)
    assert as_dict(files) == {"a.py": "x = 1\n"} and unfinished is None


def test_closing_tag_inside_code_does_not_close():
    text = (
        '<FILE path="gen.py">\n'
        'END = "</FILE>"\n'
        "def close():\n"
        '    print("</FILE>")\n'
        "    x = '</FILE>'  # </FILE> in a comment\n"
        "</FILE>\n"
    )
    files, unfinished = parse_files(text)
    assert unfinished is None
    assert len(files) == 1
    assert files[0].content == (
        'END = "</FILE>"\ndef close():\n    print("</FILE>")\n    x = \'</FILE>\'  # </FILE> in a comment\n'
    )


def test_lenient_closing_suffix_at_end_of_reply():
    files, unfinished = parse_files('<FILE path="a.py">\nx = 1\nprint(x)</FILE>')
    assert unfinished is None
    assert as_dict(files) == {"a.py": "x = 1\nprint(x)\n"}


def test_lenient_suffix_not_applied_when_truncated():
    files, unfinished = parse_files('<FILE path="a.py">\nprint(x)</FILE>', truncated=True)
    assert files == [] and unfinished == "a.py"


def test_unclosed_last_block_at_normal_end_is_returned_with_a_warning():
    parser = FileStreamParser()
    files = parser.feed('<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\ny = 2\n') + parser.finish()
    assert as_dict(files) == {"a.py": "x = 1\n", "b.py": "y = 2\n"} and parser.open_path is None
    assert len(parser.warnings) == 1 and "'b.py'" in parser.warnings[0] and "no closing </FILE>" in parser.warnings[0]


def test_primary_inner_fence_stripped():
    text = '<FILE path="a.py">\n```python\nx = 1\n```\n</FILE>\n'
    assert parse_files(text)[0][0].content == "x = 1\n"


def test_primary_inner_fence_kept_for_markdown():
    text = '<FILE path="README.md">\n```bash\nmake\n```\n</FILE>\n<FILE path="doc.markdown">\n```\nx\n```\n</FILE>\n'
    assert as_dict(parse_files(text)[0]) == {"README.md": "```bash\nmake\n```\n", "doc.markdown": "```\nx\n```\n"}


def test_primary_fence_only_at_start_is_kept():
    text = '<FILE path="a.txt">\n```\nnot closed by a fence\n</FILE>\n'
    assert parse_files(text)[0][0].content == "```\nnot closed by a fence\n"


def test_fallback_a_fenced_markers():
    text = (
        "Sure! Here you go.\n\n"
        "### FILE: src/app.py\n\n"
        "```python\n"
        "def main():\n"
        "    return 1\n"
        "```\n\n"
        "And the tests:\n"
        "### FILE: tests/test_app.py\n"
        "```\n"
        "### FILE: not-a-marker-inside-a-fence\n"
        "def test(): pass\n"
        "```\n"
        "That's all.\n"
    )
    files, unfinished = parse_files(text)
    assert unfinished is None
    assert as_dict(files) == {
        "src/app.py": "def main():\n    return 1\n",
        "tests/test_app.py": "### FILE: not-a-marker-inside-a-fence\ndef test(): pass\n",
    }


def test_fallback_a_unclosed_fence_is_returned_with_a_warning():
    parser = FileStreamParser()
    files = parser.feed("### FILE: a.py\n```python\nx = 1\n") + parser.finish()
    assert as_dict(files) == {"a.py": "x = 1\n"} and parser.open_path is None
    assert len(parser.warnings) == 1 and "'a.py'" in parser.warnings[0] and "fence" in parser.warnings[0]
    assert parse_files("### FILE: a.py\n```python\nx = 1\n", truncated=True) == ([], "a.py")


def test_fallback_b_raw_markers():
    text = "### FILE: a.py\nx = 1\n\n\n### FILE: b/c.txt\n  indented\nlast line"
    files, unfinished = parse_files(text)
    assert unfinished is None
    assert as_dict(files) == {"a.py": "x = 1\n", "b/c.txt": "  indented\nlast line\n"}


def test_fallback_b_truncated_drops_last_file():
    files, unfinished = parse_files("### FILE: a.py\nx = 1\n### FILE: b.py\ny = ", truncated=True)
    assert as_dict(files) == {"a.py": "x = 1\n"} and unfinished == "b.py"


def test_marker_path_decorations_stripped():
    files, _ = parse_files("### FILE: `src/x.py`\n```py\nx\n```\n")
    assert files[0].path == "src/x.py"


def test_triple_backtick_placeholder_replaced_in_all_formats():
    text = (
        '<FILE path="README.md">\n# Title\nTRIPLE_BACKTICKbash\nmake\nTRIPLE_BACKTICK\n</FILE>\n'
        "### FILE: doc.md\n```markdown\nTRIPLE_BACKTICKpy\nx\nTRIPLE_BACKTICK\n```\n"
        "### FILE: raw.md\nTRIPLE_BACKTICK\n"
    )
    assert as_dict(parse_files(text)[0]) == {
        "README.md": "# Title\n```bash\nmake\n```\n",
        "doc.md": "```py\nx\n```\n",
        "raw.md": "```\n",
    }


def test_placeholder_does_not_count_as_wrapping_fence():
    text = '<FILE path="a.txt">\nTRIPLE_BACKTICKpy\nx\nTRIPLE_BACKTICK\n</FILE>\n'
    assert parse_files(text)[0][0].content == "```py\nx\n```\n"


def test_exact_content_preserved():
    body = "\n\n    indented = True\n\tTabbed\n   \ntrailing spaces   \n\n\n"
    text = f'<FILE path="a.py">\n{body}</FILE>\n'
    # Only the newline right before </FILE> belongs to the tag.
    assert parse_files(text)[0][0].content == body[:-1]
    assert parse_files(text)[0][0].content.startswith("\n\n    indented")


def test_missing_trailing_newline_gets_exactly_one():
    files, _ = parse_files('<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\ny = 2\n\n</FILE>\n')
    assert as_dict(files) == {"a.py": "x = 1\n", "b.py": "y = 2\n"}


def test_existing_trailing_newlines_never_stripped():
    files, _ = parse_files('<FILE path="a.py">\ny = 2\n\n\n</FILE>\n')
    assert files[0].content == "y = 2\n\n"


def test_empty_file_stays_empty():
    files, _ = parse_files('<FILE path="pkg/__init__.py">\n</FILE>\n')
    assert as_dict(files) == {"pkg/__init__.py": ""}


def test_crlf_reply():
    files, _ = parse_files('<FILE path="a.py">\r\nx = 1\r\n</FILE>\r\n')
    assert files[0].content == "x = 1\r\n"


# ---------------------------------------------------------------------------------------------------
# Parsing: streaming
# ---------------------------------------------------------------------------------------------------

STREAM_CASES = [
    PRIMARY,
    '<FILE path="a.py">\nEND = "</FILE>"\n    print("</FILE>")\n</FILE>\n<FILE path="b.md">\n```\nx\n```\n</FILE>',
    "### FILE: a.py\n\n```python\nx = 1\n```\n### FILE: b.py\n```\ny\n```\n",
    "### FILE: a.py\nx = 1\n### FILE: b.py\ny = 2\n",
    '<FILE path="a.py">\nx = TRIPLE_BACKTICK\nprint(1)</FILE>',
]


def feed_in_slices(text: str, sizes: list[int], truncated: bool = False):
    parser = FileStreamParser()
    files: list[GeneratedFile] = []
    pos = 0
    for n in sizes:
        files += parser.feed(text[pos : pos + n])
        pos += n
    files += parser.feed(text[pos:])
    files += parser.finish(truncated=truncated)
    return files, parser.open_path


@pytest.mark.parametrize("text", STREAM_CASES)
def test_stream_one_char_at_a_time_matches_whole_parse(text):
    expected = parse_files(text)
    assert expected[0]  # the case parses to something
    assert feed_in_slices(text, [1] * len(text)) == expected


@pytest.mark.parametrize("text", STREAM_CASES)
@pytest.mark.parametrize("seed", range(20))
def test_stream_random_slices_match_whole_parse(text, seed):
    rng = random.Random(seed)
    sizes = [rng.randint(0, 12) for _ in range(len(text))]
    assert feed_in_slices(text, sizes) == parse_files(text)
    assert feed_in_slices(text, sizes, truncated=True) == parse_files(text, truncated=True)


def test_first_file_emitted_before_second_is_fed():
    first = '<FILE path="a.py">\nx = 1\n</FILE>\n'
    second = '<FILE path="b.py">\ny = 2\n</FILE>\n'
    parser = FileStreamParser()
    assert parser.feed("Intro\n") == []
    # A later </FILE> could still extend a.py, so it is complete only once the next opening tag has arrived.
    assert parser.feed(first) == []
    assert parser.feed(second[:10]) == []  # '<FILE path' is not a whole tag yet
    got = parser.feed(second[10:19])
    assert got == [GeneratedFile(path="a.py", content="x = 1\n")]
    assert parser.open_path == "b.py"
    assert parser.feed(second[19:]) == []
    assert parser.finish() == [GeneratedFile(path="b.py", content="y = 2\n")]
    assert parser.seen_paths == ["a.py", "b.py"]


def test_fenced_marker_file_emitted_at_closing_fence():
    parser = FileStreamParser()
    assert parser.feed("### FILE: a.py\n```py\nx\n") == []
    assert parser.open_path == "a.py"
    assert parser.feed("```\n") == [GeneratedFile(path="a.py", content="x\n")]


def test_raw_file_emitted_when_next_marker_arrives():
    parser = FileStreamParser()
    assert parser.feed("### FILE: a.py\nx = 1\n") == []
    assert parser.feed("### FILE: b.py\n") == [GeneratedFile(path="a.py", content="x = 1\n")]
    assert parser.open_path == "b.py"
    assert parser.feed("y = 2") == []
    assert parser.finish() == [GeneratedFile(path="b.py", content="y = 2\n")]
    assert parser.open_path is None


def test_truncated_drops_open_file_and_reports_path():
    text = '<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\ndef half(\n'
    parser = FileStreamParser()
    files = parser.feed(text)
    assert parser.open_path == "b.py"
    files += parser.finish(truncated=True)
    assert [f.path for f in files] == ["a.py"]
    assert parser.open_path == "b.py"
    assert parser.seen_paths == ["a.py", "b.py"]
    assert parse_files(text, truncated=True) == (files, "b.py")


def test_feed_after_finish_raises():
    parser = FileStreamParser()
    parser.finish()
    with pytest.raises(FileProtocolError):
        parser.feed("x")


# ---------------------------------------------------------------------------------------------------
# Path normalization
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("./a//b", "a/b"), ("a.py", "a.py"), ("src/./pkg/x.py", "src/pkg/x.py"), (" src/x.py ", "src/x.py")],
)
def test_normalize_ok(path, expected):
    assert normalize_relpath(path) == expected


REFUSED = [
    ("", r"^empty path"),
    ("   ", r"^empty path"),
    ("/etc/passwd", r"^absolute path"),
    ("~/x", r"starts with '~'"),
    ("../x.py", r"'\.\.' component"),
    ("a/../../b.py", r"'\.\.' component"),
    ("a\x00b.py", r"NUL byte"),
    ("a\nb.py", r"control character U\+000A"),
    ("a\x1bb.py", r"control character U\+001B"),
    ("a\\b.py", r"backslash"),
    ("C:foo.py", r"Windows drive letter \('C:'\)"),
    ("c:/x.py", r"Windows drive letter \('c:'\)"),
    ("src/", r"names a directory"),
    ("src/.", r"names a directory"),
    (".", r"names a directory|output directory itself"),
    (".git/hooks/pre-commit", r"inside '\.git'.*hooks.*outside the tests"),
    ("sub/.git/config", r"inside '\.git'"),
    (".GIT/hooks/post-checkout", r"inside '\.GIT'"),
    (".speedrun/backups/x", r"inside '\.speedrun'"),
    (".claude/settings.json", r"inside '\.claude'.*Claude Code.*hooks"),
    (".vscode/tasks.json", r"inside '\.vscode'.*outside the tests"),
    (".idea/workspace.xml", r"inside '\.idea'.*outside the tests"),
    (".envrc", r"'\.envrc'.*direnv.*outside the tests"),
    ("sub/.envrc", r"'\.envrc'.*direnv"),
    (".mcp.json", r"'\.mcp\.json'.*MCP servers.*outside the tests"),
]


@pytest.mark.parametrize(("path", "pattern"), REFUSED)
def test_normalize_refuses(path, pattern):
    with pytest.raises(FileProtocolError) as info:
        normalize_relpath(path)
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.mark.parametrize(("path", "pattern"), REFUSED)
def test_writer_refuses_bad_paths_and_writes_nothing(tmp_path, path, pattern):
    root = tmp_path / "out"
    writer = SafeWriter(root)
    result = writer.write(GeneratedFile(path=path, content="x\n"))
    assert isinstance(result, FileError)
    assert result.path == path
    assert re.search(pattern, result.error), result.error
    assert not root.exists() or list(root.iterdir()) == []
    assert writer.report.errors == [result] and writer.report.files_written == []


# ---------------------------------------------------------------------------------------------------
# Safe writing
# ---------------------------------------------------------------------------------------------------


def test_create_nested_and_root_created(tmp_path):
    root = tmp_path / "missing" / "root"
    writer = SafeWriter(root)
    assert not root.exists()  # building a writer touches no files (it may be built on an event loop)
    result = writer.write(GeneratedFile(path="./src//pkg/mod.py", content="a\nb\nc\n"))
    assert result == WrittenFile(path="src/pkg/mod.py", filename="mod.py", lines=3, action="created", backup=None)
    assert (root / "src/pkg/mod.py").read_bytes() == b"a\nb\nc\n"
    assert not (root / ".speedrun").exists()  # no backup needed, nothing created lazily


def test_line_count_without_trailing_newline_and_empty(tmp_path):
    writer = SafeWriter(tmp_path)
    assert writer.write(GeneratedFile(path="a.txt", content="a\nb")).lines == 2
    assert writer.write(GeneratedFile(path="b.txt", content="")).lines == 0
    assert writer.write(GeneratedFile(path="c.txt", content="x\fy\r\n")).lines == 1
    assert (tmp_path / "b.txt").read_bytes() == b""


def test_content_written_byte_exact(tmp_path):
    content = "é — ünïcode\r\nline\n\n"
    SafeWriter(tmp_path).write(GeneratedFile(path="u.txt", content=content))
    assert (tmp_path / "u.txt").read_bytes() == content.encode("utf-8")


def test_new_file_mode_follows_umask(tmp_path):
    SafeWriter(tmp_path).write(GeneratedFile(path="a.py", content="x\n"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.py").stat().st_mode) == 0o666 & ~umask


def test_unchanged_detection(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    before = (tmp_path / "a.py").stat().st_mtime_ns
    writer = SafeWriter(tmp_path)
    result = writer.write(GeneratedFile(path="a.py", content="x = 1\n"))
    assert isinstance(result, WrittenFile)
    assert result.action == "unchanged" and result.backup is None and result.lines == 1
    assert (tmp_path / "a.py").stat().st_mtime_ns == before
    assert not (tmp_path / ".speedrun").exists()


def test_modified_file_backed_up_and_mode_preserved(tmp_path):
    target = tmp_path / "bin" / "run.sh"
    target.parent.mkdir()
    target.write_text("echo old\n")
    target.chmod(0o754)
    writer = SafeWriter(tmp_path)
    result = writer.write(GeneratedFile(path="bin/run.sh", content="echo new\necho more\n"))
    assert isinstance(result, WrittenFile)
    assert result.action == "modified" and result.lines == 2
    assert target.read_text() == "echo new\necho more\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o754
    backup = Path(result.backup)
    assert backup.is_absolute()
    assert backup.read_text() == "echo old\n"
    # <root>/.speedrun/backups/<UTC stamp>-<random>/<relative path>
    rel = backup.relative_to(tmp_path.resolve())
    assert rel.parts[:2] == (".speedrun", "backups")
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]+", rel.parts[2])
    assert rel.parts[3:] == ("bin", "run.sh")
    assert (tmp_path / ".speedrun" / ".gitignore").read_text().strip() == "*"


def test_one_backup_directory_per_writer(tmp_path):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("old\n")
    writer = SafeWriter(tmp_path)
    r1 = writer.write(GeneratedFile(path="a.py", content="new\n"))
    r2 = writer.write(GeneratedFile(path="b.py", content="new\n"))
    assert Path(r1.backup).parent == Path(r2.backup).parent
    assert len(list((tmp_path / ".speedrun" / "backups").iterdir())) == 1


def test_backup_dir_override(tmp_path):
    root, backups = tmp_path / "root", tmp_path / "bk"
    root.mkdir()
    (root / "a.py").write_text("old\n")
    result = SafeWriter(root, backup_dir=backups).write(GeneratedFile(path="a.py", content="new\n"))
    assert Path(result.backup) == (backups / "a.py").resolve()
    assert (backups / "a.py").read_text() == "old\n"
    assert not (root / ".speedrun").exists()


def test_duplicate_path_first_copy_kept(tmp_path):
    writer = SafeWriter(tmp_path)
    assert isinstance(writer.write(GeneratedFile(path="a.py", content="first\n")), WrittenFile)
    dup = writer.write(GeneratedFile(path="./a.py", content="second\n"))
    assert isinstance(dup, FileError)
    assert dup.error == "duplicate path; the first copy was kept"
    assert (tmp_path / "a.py").read_text() == "first\n"
    report = writer.report
    assert [w.path for w in report.files_written] == ["a.py"]
    assert [e.path for e in report.errors] == ["./a.py"]


def test_duplicate_of_refused_path(tmp_path):
    writer = SafeWriter(tmp_path, max_file_bytes=3)
    assert isinstance(writer.write(GeneratedFile(path="a.py", content="too long\n")), FileError)
    dup = writer.write(GeneratedFile(path="a.py", content="ok\n"))
    assert isinstance(dup, FileError) and dup.error.startswith("duplicate path; the first copy was refused")
    assert not (tmp_path / "a.py").exists()


def test_size_cap(tmp_path):
    writer = SafeWriter(tmp_path, max_file_bytes=10)
    result = writer.write(GeneratedFile(path="big.txt", content="é" * 6))  # 12 UTF-8 bytes, 6 chars
    assert isinstance(result, FileError)
    assert "12 bytes" in result.error and "10-byte cap" in result.error
    assert "SPEEDRUN_MAX_FILE_BYTES" in result.error
    assert not (tmp_path / "big.txt").exists()
    assert isinstance(writer.write(GeneratedFile(path="ok.txt", content="0123456789")), WrittenFile)


def test_symlinked_directory_pointing_outside_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    writer = SafeWriter(root)
    for path in ("escape/x.py", "escape/deeper/x.py"):
        result = writer.write(GeneratedFile(path=path, content="x\n"))
        assert isinstance(result, FileError)
        assert "'escape' is a symlink" in result.error and "outside the output directory" in result.error
    assert list(outside.iterdir()) == []


def test_symlink_chain_escaping_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    (root / "inner" / "out").symlink_to(outside)
    (root / "alias").symlink_to(root / "inner")  # inside the root: fine on its own
    writer = SafeWriter(root)
    assert writer.write(GeneratedFile(path="alias/ok.py", content="x\n")).action == "created"
    assert (root / "inner" / "ok.py").exists()
    result = writer.write(GeneratedFile(path="alias/out/x.py", content="x\n"))
    assert isinstance(result, FileError) and "outside the output directory" in result.error
    assert list(outside.iterdir()) == []


def test_symlink_into_protected_directory_refused(tmp_path):
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "hooks").symlink_to(tmp_path / ".git" / "hooks")
    result = SafeWriter(tmp_path).write(GeneratedFile(path="hooks/pre-commit", content="evil\n"))
    assert isinstance(result, FileError) and "'.git'" in result.error
    assert list((tmp_path / ".git" / "hooks").iterdir()) == []


def test_symlink_file_target_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.txt"
    root.mkdir()
    outside.write_text("keep\n")
    (root / "link.txt").symlink_to(outside)
    result = SafeWriter(root).write(GeneratedFile(path="link.txt", content="overwrite\n"))
    assert isinstance(result, FileError) and "symlink" in result.error
    assert outside.read_text() == "keep\n"
    assert (root / "link.txt").is_symlink()


def test_dangling_symlink_target_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.py").symlink_to(tmp_path / "nowhere.py")
    result = SafeWriter(tmp_path / "root").write(GeneratedFile(path="a.py", content="x\n"))
    assert isinstance(result, FileError) and "symlink" in result.error
    assert not (tmp_path / "nowhere.py").exists()


def test_directory_target_refused(tmp_path):
    (tmp_path / "pkg").mkdir()
    result = SafeWriter(tmp_path).write(GeneratedFile(path="pkg", content="x\n"))
    assert isinstance(result, FileError) and "directory already exists" in result.error


def test_file_in_the_way_of_parent_directory(tmp_path):
    (tmp_path / "src").write_text("a file\n")
    result = SafeWriter(tmp_path).write(GeneratedFile(path="src/x.py", content="x\n"))
    assert isinstance(result, FileError) and "'src' exists and is not a directory" in result.error


def test_root_itself_a_symlink_is_fine(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    result = SafeWriter(tmp_path / "link").write(GeneratedFile(path="a/b.py", content="x\n"))
    assert isinstance(result, WrittenFile)
    assert (real / "a" / "b.py").read_text() == "x\n"


def test_failed_write_leaves_no_temp_file_and_keeps_old(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("old\n")
    writer = SafeWriter(tmp_path, backup_dir=tmp_path.parent / f"{tmp_path.name}-bk")

    real_replace = os.replace

    def boom(src, dst, **dir_fds):
        # Only the rename into the output tree fails; the backup (in its own directory) still works.
        if (
            dir_fds
            and not os.path.samestat(os.fstat(dir_fds["dst_dir_fd"]), os.stat(tmp_path))
            and not (
                (tmp_path / "new").exists()
                and os.path.samestat(os.fstat(dir_fds["dst_dir_fd"]), os.stat(tmp_path / "new"))
            )
        ):
            return real_replace(src, dst, **dir_fds)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    result = writer.write(GeneratedFile(path="a.py", content="new\n"))
    assert isinstance(result, FileError)
    assert "could not write" in result.error and "No space left" in result.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py"]
    assert (tmp_path / "a.py").read_text() == "old\n"

    result = writer.write(GeneratedFile(path="new/b.py", content="b\n"))
    assert isinstance(result, FileError)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == []


def test_failed_temp_write_cleans_up(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Broken:
        def __init__(self, fd, mode):
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdopen", Broken)
    result = SafeWriter(tmp_path).write(GeneratedFile(path="a.py", content="x\n"))
    assert isinstance(result, FileError) and "Input/output error" in result.error
    assert list(tmp_path.iterdir()) == []


def test_no_temp_files_after_successful_writes(tmp_path):
    writer = SafeWriter(tmp_path)
    writer.write(GeneratedFile(path="a.py", content="1\n"))
    writer.write(GeneratedFile(path="a/b.py", content="2\n"))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_report_in_order_and_stream_to_disk(tmp_path):
    reply = PRIMARY + '<FILE path="../evil.py">\nx\n</FILE>\n<FILE path="src/app.py">\ndup\n</FILE>\n'
    parser, writer = FileStreamParser(), SafeWriter(tmp_path)
    for i in range(0, len(reply), 7):
        for f in parser.feed(reply[i : i + 7]):
            writer.write(f)
    for f in parser.finish():
        writer.write(f)
    report = writer.report
    assert [w.path for w in report.files_written] == ["src/app.py", "tests/test_app.py"]
    assert [(e.path, e.error.split(";")[0]) for e in report.errors] == [
        ("../evil.py", "path contains a '..' component, which could leave the output directory"),
        ("src/app.py", "duplicate path"),
    ]
    assert (tmp_path / "src/app.py").read_text() == "def main():\n    return 1\n"
    assert not (tmp_path.parent / "evil.py").exists()
