"""Write generated files safely under an output directory: path checks, race-free atomic writes, backups."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from speedrun.errors import FileProtocolError, InputError
from speedrun.state.records import FileAction, FileError, GeneratedFile, WriteReport, WrittenFile

__all__ = ["SafeWriter", "check_output_dir", "normalize_relpath", "parse_allow_paths", "write_text_atomic"]

# How writes stay confined (the rule's one owner is this module):
# - A path is checked lexically first (normalize_relpath), then walked component by component from a directory file
#   descriptor with O_NOFOLLOW / dir_fd, so the check and the write are the same operation: a symlink swapped in
#   mid-write is seen by the open that would cross it, never silently followed.
# - Symlinks that already exist inside the output root are honoured only when their target stays inside the root;
#   the walk then restarts from the root's descriptor along the target, still without following anything.
# - "Places that run code outside the tests" are judged on the real path relative to the allowed root (confine_to),
#   so an output directory that itself lies in .git/hooks is caught too.
# - allow_paths lifts that refusal for places the user named. Entries are relative to the output directory, like
#   the paths in a reply; an entry may also be written relative to the allowed root, which is the only way to name
#   a protected place that holds the output directory itself. An entry lifts a place only if it names the place
#   itself or a path inside it: 'src/' never lifts 'src/.git/hooks/x'; '.git/hooks/' does (decision: .git/ is
#   liftable like the rest, but only by an entry that names it). '.speedrun' (our own state and backups) is never
#   lifted. Containment, '..', absolute paths and symlink rules are never lifted.

# --------------------------------------------------------------------------------------------------
# Protected places
# --------------------------------------------------------------------------------------------------

_OUTSIDE = "outside the tests"
# Directories (any component of a path) whose contents tools load or execute.
_PROTECTED_DIRS = {
    ".git": f"git runs hooks from it (e.g. .git/hooks/pre-commit), so code there would run {_OUTSIDE}",
    ".speedrun": "it holds speed-run's own state and backups, which generated code must not overwrite",
    ".claude": f"Claude Code loads settings and runs hooks from it, so code there would run {_OUTSIDE}",
    ".vscode": f"the editor loads settings and runs tasks from it, so code there would run {_OUTSIDE}",
    ".idea": f"the IDE loads settings and run configurations from it, so code there would run {_OUTSIDE}",
    ".cursor": f"Cursor loads rules, settings and MCP servers from it, so code there would run {_OUTSIDE}",
    ".devcontainer": f"dev containers run the build steps and lifecycle commands it defines, {_OUTSIDE}",
    ".husky": f"husky runs the git hooks it holds on every commit, {_OUTSIDE}",
    ".venv": f"it is a virtualenv: shells source its bin/activate and Python runs its .pth files, {_OUTSIDE}",
    "site-packages": f"Python runs the .pth files in it and imports its packages at start-up, {_OUTSIDE}",
    "dist-packages": f"Python runs the .pth files in it and imports its packages at start-up, {_OUTSIDE}",
}
# Two-component places: (parent, child) -> reason.
_PROTECTED_PAIRS = {
    (".github", "workflows"): f"GitHub Actions runs the workflows in it on every push, {_OUTSIDE}",
}
# Files (last component) that tools read as configuration and act on.
_PROTECTED_FILES = {
    ".envrc": f"direnv executes it when a shell enters the directory, {_OUTSIDE}",
    ".mcp.json": f"Claude Code launches the MCP servers it lists, {_OUTSIDE}",
    ".gitlab-ci.yml": f"GitLab CI runs the jobs it defines, {_OUTSIDE}",
    ".pre-commit-config.yaml": f"pre-commit runs the hooks it lists on every commit, {_OUTSIDE}",
    ".gitmodules": f"git clones the submodule URLs it lists into the paths it names, {_OUTSIDE}",
    ".gitattributes": f"it selects git filters and diff drivers, which git runs as commands {_OUTSIDE}",
    "pyvenv.cfg": f"it marks its directory as a virtualenv, whose scripts and .pth files run {_OUTSIDE}",
}
_NEVER_ALLOWED = {".speedrun"}
_VENV_MARKER = "pyvenv.cfg"
_VENV_REASON = f"it holds pyvenv.cfg, so it is a virtualenv whose scripts and .pth files run {_OUTSIDE}"

_SHOW = 200  # longest echo of an input in a message
_NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_MAX_LINKS = 40  # like the kernel's ELOOP limit
_MAX_RETRIES = 50  # a component that keeps changing under us is refused rather than chased forever

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
# Invisible characters that make a name display differently from what it is (Trojan Source, CVE-2021-42574).
_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}


def _clip(text: str, limit: int = _SHOW) -> str:
    # backslashreplace: a real name may hold undecodable bytes (surrogate escapes), which JSON output cannot carry.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class _Hit:
    """One protected place on a path: where it ends (index into the path), how to show it, and why."""

    end: int
    shown: str
    why: str
    inside: bool  # the path goes into it (a directory), rather than naming it as the file
    liftable: bool  # allow_paths may lift it


def _static_hits(parts: Sequence[str], *, last_is_file: bool = True) -> list[_Hit]:
    # casefold: on case-insensitive file systems .GIT is .git.
    hits: list[_Hit] = []
    n = len(parts)
    for i, part in enumerate(parts):
        key = part.casefold()
        inside = i < n - 1 or not last_is_file
        why = _PROTECTED_DIRS.get(key)
        shown = part
        if why is None and i > 0:
            why = _PROTECTED_PAIRS.get((parts[i - 1].casefold(), key))
            shown = f"{parts[i - 1]}/{part}"
        if why is None and not inside:
            why = _PROTECTED_FILES.get(key)
            shown = part
        if why is not None:
            hits.append(_Hit(i, shown, why, inside, key not in _NEVER_ALLOWED))
    return hits


def _hit_message(hit: _Hit, frame: Sequence[str], *, whole_place: bool = False, offset: int = 0) -> str:
    """The refusal for a protected place; the allow_paths hint names the file, or the place itself (whole_place).

    offset: how many leading components of frame lead to the output directory; the hint is written relative to
    the output directory when the place lies inside it.
    """
    where = "inside " if hit.inside else ""
    msg = f"refusing to write {where}'{_clip(hit.shown)}': {hit.why}; put the file elsewhere"
    if hit.liftable:
        if 0 < offset <= hit.end:
            frame, end = frame[offset:], hit.end - offset
        else:
            end = hit.end
        entry = "/".join(frame[: end + 1]) + "/" if whole_place else "/".join(frame)
        msg += f", or name '{_clip(entry)}' in allow_paths (SPEEDRUN_ALLOW_PATHS) to allow it"
    return msg


_Allow = tuple[tuple[str, ...], bool]  # (components, is a directory prefix)


def _lifted(
    hit: _Hit, frame: Sequence[str], allow: Sequence[_Allow], *, on_the_way: bool = False, offset: int = 0
) -> bool:
    """Does an allow entry name this protected place for this path (relative to the allowed root)?

    on_the_way: frame is a directory being walked towards a file; an entry inside it lets the walk pass
    (the file itself is judged again when it is reached). offset: components of frame that lead to the output
    directory; entries are also read relative to it, for places inside it.
    """
    if not hit.liftable:
        return False
    if _named(hit.end, tuple(frame), allow, on_the_way):
        return True
    return 0 < offset <= hit.end and _named(hit.end - offset, tuple(frame[offset:]), allow, on_the_way)


def _named(end: int, frame: tuple[str, ...], allow: Sequence[_Allow], on_the_way: bool) -> bool:
    for entry, is_prefix in allow:
        if len(entry) <= end:
            continue  # the entry stops above the protected place, so it does not name it
        if on_the_way and entry[: len(frame)] == frame:
            return True
        if is_prefix:
            if len(frame) >= len(entry) + (0 if on_the_way else 1) and frame[: len(entry)] == entry:
                return True
        elif frame == entry:
            return True
    return False


def _first_unlifted(hits: Sequence[_Hit], frame: Sequence[str], allow: Sequence[_Allow], offset: int = 0) -> str | None:
    for hit in hits:
        if not _lifted(hit, frame, allow, offset=offset):
            return _hit_message(hit, frame, offset=offset)
    return None


# --------------------------------------------------------------------------------------------------
# Path syntax
# --------------------------------------------------------------------------------------------------


def _syntax_parts(path: str) -> list[str]:
    """Split a relative path into clean components, or raise FileProtocolError saying why it is unsafe."""
    if not isinstance(path, str):
        raise FileProtocolError("path is not text; give a plain relative path such as src/app.py")
    # A byte-order mark is an encoding artefact, never part of a name a model meant.
    path = path.replace("\ufeff", "")
    if not path or not path.strip():
        raise FileProtocolError("empty path: name the file relative to the output directory, e.g. src/app.py")
    if "\x00" in path:
        raise FileProtocolError("path contains a NUL byte; give a plain relative path such as src/app.py")
    for ch in path:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029, 0x85):
            raise FileProtocolError(
                f"path contains control character U+{code:04X} ({ch!r}); a path must be one plain line"
            )
        if 0xD800 <= code <= 0xDFFF:
            raise FileProtocolError(
                f"path contains a lone surrogate U+{code:04X}, which is not valid text; give a plain UTF-8 path"
            )
        if code in _BIDI:
            raise FileProtocolError(
                f"path contains the invisible direction control U+{code:04X}, which makes a name display "
                "differently from what it is; give a plain path"
            )
    p = path.strip()
    if "\\" in p:
        raise FileProtocolError("path contains a backslash; use forward slashes, e.g. src/app.py")
    if _DRIVE_RE.match(p):
        raise FileProtocolError(
            f"path starts with a Windows drive letter ({p[:2]!r}); give a path relative to the output directory"
        )
    if p.startswith("/"):
        raise FileProtocolError("absolute path; give a path relative to the output directory, e.g. src/app.py")
    if p.startswith("~"):
        raise FileProtocolError(
            "path starts with '~' (a home directory, i.e. absolute); give a path relative to the output directory"
        )
    raw_parts = p.split("/")
    if ".." in raw_parts:
        raise FileProtocolError("path contains a '..' component, which could leave the output directory")
    if p.endswith("/") or raw_parts[-1] == ".":
        raise FileProtocolError("path ends with '/' or '/.', which names a directory; give a file path")
    parts = [c for c in raw_parts if c not in ("", ".")]
    if not parts:
        raise FileProtocolError("path names the output directory itself; give a file path")
    for part in parts:
        size = len(part.encode("utf-8"))
        if size > _NAME_MAX:
            raise FileProtocolError(
                f"the name '{_clip(part, 60)}' is {size} bytes; file systems allow at most {_NAME_MAX} per name"
            )
    return parts


def parse_allow_paths(entries: Sequence[str] | str) -> tuple[str, ...]:
    """Validate allow_paths entries (a list, or one string separated by commas, colons or newlines).

    Each entry is a relative path: an exact file ('.gitlab-ci.yml') or a directory prefix ending in '/'
    ('.github/workflows/'). Raises InputError naming a bad entry; returns the normalized entries.
    """
    if isinstance(entries, str):
        entries = [e for e in re.split(r"[,:\n]", entries)]
    out: list[str] = []
    for raw in entries:
        entry = str(raw).strip().replace("\ufeff", "")
        if not entry:
            continue
        is_prefix = entry.endswith("/")
        if all(c in ("", ".") for c in entry.split("/")):
            raise InputError(
                f"allow_paths entry {_clip(entry)!r} names the whole directory; name the protected file or "
                "directory itself, such as '.gitlab-ci.yml' or '.github/workflows/'."
            )
        try:
            parts = _syntax_parts(entry.rstrip("/") or entry)
        except FileProtocolError as exc:
            raise InputError(
                f"allow_paths entry {_clip(entry)!r} is not a usable relative path: {exc}. Name a file "
                "such as '.gitlab-ci.yml' or a directory ending in '/' such as '.github/workflows/'."
            ) from None
        out.append("/".join(parts) + ("/" if is_prefix else ""))
    return tuple(out)


def _allow_rules(entries: Sequence[str]) -> tuple[_Allow, ...]:
    return tuple((tuple(e.rstrip("/").split("/")), e.endswith("/")) for e in parse_allow_paths(entries))


def normalize_relpath(path: str, allow_paths: Sequence[str] = ()) -> str:
    """Return the normalized relative POSIX path, or raise FileProtocolError saying exactly why it is unsafe.

    Protected places (.git/, CI workflows, virtualenvs, ...) are refused unless allow_paths names them.
    """
    parts = _syntax_parts(path)
    reason = _first_unlifted(_static_hits(parts), parts, _allow_rules(allow_paths) if allow_paths else ())
    if reason:
        raise FileProtocolError(reason)
    return "/".join(parts)


# --------------------------------------------------------------------------------------------------
# Race-free directory walking
# --------------------------------------------------------------------------------------------------

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_HAVE_DIR_FD = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd and bool(_O_NOFOLLOW)


class _Refused(Exception):
    """Internal: stop a write with this user-facing reason."""


class _Protected(_Refused):
    """Internal: the walk reached a protected place that allow_paths does not lift."""

    def __init__(self, hit: _Hit, frame: Sequence[str], offset: int = 0) -> None:
        # Met while walking directories: the hint names the place, since the walk does not know the file yet.
        super().__init__(_hit_message(hit, frame, whole_place=True, offset=offset))
        self.hit, self.frame = hit, list(frame)


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _rel_parts(path: str, root: str) -> list[str]:
    return [] if path == root else path[len(root.rstrip(os.sep)) + 1 :].split(os.sep)


def _lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Walk:
    """Opens directories one component at a time from a descriptor, never following a symlink it did not vet.

    frame: the path of the start directory relative to the allowed root, for judging protected places
    (allow entries are read relative to the allowed root and to the start directory).
    boundary: the real path of the start directory when existing symlinks may be followed inside it
    (they are refused when None). allow: rules that lift protected places; check=False skips protection
    (speed-run's own backup area).
    """

    def __init__(
        self,
        start_fd: int,
        frame: Sequence[str],
        *,
        boundary: str | None,
        allow: Sequence[_Allow],
        check: bool = True,
        what: str = "the output directory",
    ) -> None:
        self.start_fd, self.frame, self.boundary = start_fd, list(frame), boundary
        self.allow, self.check, self.what = allow, check, what
        self.offset = len(self.frame)  # allow entries may also be relative to the start (the output directory)
        self.venvs: list[_Hit] = []  # virtualenv directories passed because an allow entry lies inside them

    def open(self, parts: Sequence[str], *, create: bool) -> tuple[int, list[str]]:
        """Return (fd, real components under the start) of the directory reached through parts."""
        pending = list(parts)
        cur: list[str] = []
        fd = os.dup(self.start_fd)
        links = retries = 0
        try:
            while pending:
                name = pending.pop(0)
                shown = "/".join([*cur, name])
                here = [*self.frame, *cur, name]
                if self.check:
                    for hit in _static_hits(here, last_is_file=False):
                        if not _lifted(hit, here, self.allow, on_the_way=True, offset=self.offset):
                            raise _Protected(hit, here, self.offset)
                st = _lstat_at(name, fd)
                if st is None:
                    if not create:
                        raise _Refused(f"'{_clip(shown)}' does not exist")
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # appeared meanwhile: examine whatever is there now
                    except OSError as exc:
                        raise _Refused(f"could not create directory '{_clip(shown)}': {_strerror(exc)}") from None
                    retries += 1
                    pending.insert(0, name)
                elif stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise _Refused(f"too many levels of symlinks at '{_clip(shown)}'")
                    target = self._link_target(fd, cur, name, shown)
                    os.close(fd)
                    fd = os.dup(self.start_fd)
                    cur = []
                    pending = [*target, *pending]
                elif not stat.S_ISDIR(st.st_mode):
                    raise _Refused(f"'{_clip(shown)}' exists and is not a directory")
                else:
                    try:
                        new_fd = os.open(name, _O_DIR | _O_NOFOLLOW, dir_fd=fd)
                    except OSError:
                        # Swapped between the lstat and the open (ELOOP for a new symlink, ENOTDIR, ENOENT): look again.
                        retries += 1
                        pending.insert(0, name)
                    else:
                        os.close(fd)
                        fd = new_fd
                        cur.append(name)
                        retries = 0
                        if self.check and _lstat_at(_VENV_MARKER, fd) is not None:
                            hit = _Hit(len(here) - 1, "/".join(here), _VENV_REASON, True, True)
                            if not _lifted(hit, here, self.allow, on_the_way=True, offset=self.offset):
                                raise _Protected(hit, here, self.offset)
                            self.venvs.append(hit)  # judged again against the file at the end of the walk
                if retries > _MAX_RETRIES:
                    raise _Refused(f"'{_clip(shown)}' kept changing while it was being opened; try again")
            return fd, cur
        except BaseException:
            os.close(fd)
            raise

    def _link_target(self, fd: int, cur: list[str], name: str, shown: str) -> list[str]:
        """Components (relative to the start) that the symlink cur/name points to, or refuse if it leaves."""
        if self.boundary is None:
            raise _Refused(f"'{_clip(shown)}' is a symlink; refusing to write through it (remove the link)")
        target = os.readlink(name, dir_fd=fd)
        here = os.path.join(self.boundary, *cur)
        lexical = os.path.normpath(os.path.join(here, target))
        if _inside(lexical, self.boundary):
            return [p for p in _rel_parts(lexical, self.boundary) if p]
        # The target may reach back in through other links; judge where it really goes, then walk there safely.
        real = os.path.realpath(os.path.join(here, name))
        if _inside(real, self.boundary):
            return [p for p in _rel_parts(real, self.boundary) if p]
        raise _Refused(
            f"'{_clip(shown)}' is a symlink to {_clip(real)}, outside {self.what}; refusing to write through it"
        )


def _open_real_dir(path: str) -> int:
    return os.open(path, _O_DIR)


# --------------------------------------------------------------------------------------------------
# Output directory check (called at the MCP and CLI edges before any work starts)
# --------------------------------------------------------------------------------------------------


def check_output_dir(path: Path, allowed_root: Path, allow_paths: Sequence[str] = ()) -> None:
    """Refuse an output dir that is outside allowed_root, lies in a protected place, or is not a usable directory.

    Creates the directory (and missing parents) when absent. Raises InputError naming the dir and the fix.
    allow_paths: entries relative to allowed_root that name the protected place holding the dir
    ('.github/workflows/' lets an output dir lie there); entries relative to the dir itself do not matter here.
    """
    shown = _clip(str(path))
    rules = _allow_rules(allow_paths)
    try:
        if Path(allowed_root).absolute() == Path(path).absolute():
            # The output dir is its own allowed root (the CLI outside a project): nothing above it to judge.
            Path(path).absolute().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"output_dir {shown} cannot be created: {_strerror(exc)}; choose a writable directory"
        ) from None
    try:
        allowed_real = os.path.realpath(Path(allowed_root).absolute())
    except (OSError, ValueError) as exc:
        raise InputError(f"allowed root {_clip(str(allowed_root))} cannot be used: {exc}") from None
    if not os.path.isdir(allowed_real):
        raise InputError(
            f"allowed root {_clip(str(allowed_root))} is not an existing directory; open a folder that exists"
        )
    try:
        real = os.path.realpath(Path(path).absolute())
    except (OSError, ValueError) as exc:
        raise InputError(f"output_dir {shown} cannot be used: {exc}; give a plain directory path") from None
    if not _inside(real, allowed_real):
        raise InputError(
            f"output_dir {shown} resolves to {_clip(real)}, outside the allowed root {_clip(allowed_real)}; "
            "choose a directory inside it"
        )
    parts = _rel_parts(real, allowed_real)
    if not _HAVE_DIR_FD:
        raise InputError("this platform has no O_NOFOLLOW/dir_fd support, which speed-run needs to write safely")
    try:
        start = _open_real_dir(allowed_real)
    except OSError as exc:
        raise InputError(f"allowed root {_clip(allowed_real)} cannot be opened: {_strerror(exc)}") from None
    try:
        fd, _ = _Walk(start, [], boundary=None, allow=rules, what="the allowed root").open(parts, create=True)
        os.close(fd)
    except _Protected as exc:
        fix = "Choose another output_dir"
        if exc.hit.liftable:
            place = "/".join(parts)
            fix += f", or name '{_clip(place)}/' in allow_paths (SPEEDRUN_ALLOW_PATHS) if you really want files there"
        raise InputError(
            f"output_dir {shown} lies inside '{_clip(exc.hit.shown)}' under the allowed root: {exc.hit.why}. {fix}."
        ) from None
    except _Refused as exc:
        raise InputError(f"output_dir {shown} cannot be used: {exc}. Choose another output_dir.") from None
    except OSError as exc:
        raise InputError(
            f"output_dir {shown} cannot be created: {_strerror(exc)}; choose a writable directory"
        ) from None
    finally:
        os.close(start)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _count_lines(content: str) -> int:
    # Not splitlines(): it also splits on \r, \f, \x1c, U+2028 ..., which are not line ends in code.
    if not content:
        return 0
    return content.count("\n") + (0 if content.endswith("\n") else 1)


def _temp_name() -> str:
    # Fixed length whatever the target's name, so a 255-byte name never makes its temp name too long.
    return f".speedrun-{secrets.token_hex(8)}.tmp"


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(os.dup(fd), "wb") as fh:
        fh.write(data)


def _atomic_write(dir_fd: int, name: str, data: bytes, mode: int | None, times: tuple[int, int] | None = None) -> None:
    """Write data to name in dir_fd through a temp file and a rename; the rename replaces a link, never follows it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW
    for _ in range(_MAX_RETRIES):
        tmp = _temp_name()
        try:
            fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)  # 0o666: the umask decides, like a normal new file
            break
        except FileExistsError:
            continue
    else:
        raise OSError(17, "could not pick a free temporary name")
    done = False
    try:
        try:
            _write_all(fd, data)
            if mode is not None:
                os.fchmod(fd, mode)
            if times is not None:
                os.utime(fd, ns=times)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        done = True
    finally:
        if not done:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass


class SafeWriter:
    """Writes generated files under one root: refuses unsafe paths, writes atomically, backs up what it replaces."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = 1_000_000,
        backup_dir: Path | None = None,
        allow_paths: Sequence[str] = (),
        confine_to: Path | None = None,
    ) -> None:
        """Set up a writer; touches no files until the first write (so building one never blocks an event loop).

        backup_dir overrides the per-run backup directory (default: <root>/.speedrun/backups/<stamp>).
        allow_paths: places that run code outside the tests which the user named (see parse_allow_paths),
        relative to root, or to confine_to. confine_to: the allowed root that protection is judged against
        (default: root); an output directory inside a protected place there has every write refused.
        """
        self._root_arg = Path(root)
        self._confine_arg = Path(confine_to) if confine_to is not None else None
        self._max = max_file_bytes
        self._allow = _allow_rules(allow_paths)  # bad entries fail here, before any work
        self._backup_override = Path(backup_dir) if backup_dir is not None else None
        self._backup_parts: list[str] | None = None  # under the backup anchor, once chosen
        self._setup: tuple[str, list[str], str] | str | None = None  # (anchor, root parts, real root) or a reason
        self._outcomes: dict[str, bool] = {}  # normalized path -> was it written
        self._written: list[WrittenFile] = []
        self._errors: list[FileError] = []
        self._lock = threading.Lock()  # one writer may be shared by threads (asyncio.to_thread callers)

    @property
    def report(self) -> WriteReport:
        """Everything written or refused so far, in order."""
        return WriteReport(files_written=list(self._written), errors=list(self._errors))

    def write(self, f: GeneratedFile) -> WrittenFile | FileError:
        """Write one file; never raises for a bad file, returns a FileError saying why instead. Blocking I/O."""
        with self._lock:
            try:
                parts = _syntax_parts(f.path)
            except FileProtocolError as exc:
                return self._refuse(f.path, str(exc))
            rel = "/".join(parts)
            if rel in self._outcomes:
                if self._outcomes[rel]:
                    return self._refuse(f.path, "duplicate path; the first copy was kept")
                return self._refuse(f.path, "duplicate path; the first copy was refused, so this one is refused too")
            try:
                result = self._write_new(rel, parts, f)
            except _Refused as exc:
                result = self._refuse(f.path, str(exc))
            except OSError as exc:
                result = self._refuse(f.path, f"could not write the file: {_strerror(exc)}")
            self._outcomes[rel] = isinstance(result, WrittenFile)
            return result

    # -- internals ---------------------------------------------------------------------------------

    def _refuse(self, path: str, why: str) -> FileError:
        # The path is echoed as given, but bounded and always encodable (a lone surrogate cannot go out as JSON).
        err = FileError(path=_clip(path, 300), error=why)
        self._errors.append(err)
        return err

    def _ok(self, rel: str, content: str, action: FileAction, backup: str | None = None) -> WrittenFile:
        done = WrittenFile(
            path=rel, filename=rel.rsplit("/", 1)[-1], lines=_count_lines(content), action=action, backup=backup
        )
        self._written.append(done)
        return done

    def _prepare(self) -> tuple[str, list[str], str]:
        """Resolve the allowed root and the output root once: (anchor real path, root parts under it, real root)."""
        if self._setup is None:
            self._setup = self._resolve_roots()
        if isinstance(self._setup, str):
            raise _Refused(self._setup)
        return self._setup

    def _resolve_roots(self) -> tuple[str, list[str], str] | str:
        if not _HAVE_DIR_FD:
            return "this platform has no O_NOFOLLOW/dir_fd support, which speed-run needs to write safely"
        root = self._root_arg.absolute()
        if self._confine_arg is None or self._confine_arg.absolute() == root:
            try:
                root.mkdir(parents=True, exist_ok=True)  # the user's own choice of directory: nothing to confine
            except OSError as exc:
                return f"could not create the output directory {_clip(str(root))}: {_strerror(exc)}"
            real = os.path.realpath(root)
            return real, [], real
        anchor = os.path.realpath(self._confine_arg.absolute())
        if not os.path.isdir(anchor):
            return f"the allowed root {_clip(anchor)} is not an existing directory"
        real = os.path.realpath(root)
        if not _inside(real, anchor):
            return (
                f"the output directory {_clip(str(root))} resolves to {_clip(real)}, outside the allowed root "
                f"{_clip(anchor)}; choose an output directory inside it"
            )
        return anchor, _rel_parts(real, anchor), real

    def _open_root(self) -> tuple[int, list[str], str, list[_Hit]]:
        """Open the output root from the allowed root: (fd, root parts, real root, virtualenvs passed on the way)."""
        anchor, root_parts, real_root = self._prepare()
        start = _open_real_dir(anchor)
        walk = _Walk(start, [], boundary=None, allow=self._allow, what="the allowed root")
        try:
            fd, _ = walk.open(root_parts, create=True)
        except _Protected:
            raise
        except _Refused as exc:
            raise _Refused(f"the output directory cannot be used: {exc}") from None
        finally:
            os.close(start)
        return fd, root_parts, real_root, walk.venvs

    def _write_new(self, rel: str, parts: list[str], f: GeneratedFile) -> WrittenFile | FileError:
        try:
            data = f.content.encode("utf-8")
        except UnicodeEncodeError:
            return self._refuse(f.path, "content cannot be encoded as UTF-8 (it contains lone surrogate characters)")
        if len(data) > self._max:
            return self._refuse(
                f.path,
                f"content is {len(data):,} bytes, over the {self._max:,}-byte cap; "
                "split the file, or raise the cap with SPEEDRUN_MAX_FILE_BYTES",
            )
        # The lexical check first (on the path under the allowed root, so an output directory inside .git/hooks
        # counts), so a named protected path is refused before anything is created.
        root_parts = self._prepare()[1]
        frame = [*root_parts, *parts]
        reason = _first_unlifted(_static_hits(frame), frame, self._allow, len(root_parts))
        if reason:
            return self._refuse(f.path, reason)

        root_fd, root_parts, real_root, venvs = self._open_root()
        try:
            walk = _Walk(root_fd, root_parts, boundary=real_root, allow=self._allow)
            dir_fd, real_dir = walk.open(parts[:-1], create=True)
        finally:
            os.close(root_fd)
        try:
            return self._write_in(dir_fd, rel, [*real_dir, parts[-1]], root_parts, [*venvs, *walk.venvs], data, f)
        finally:
            os.close(dir_fd)

    def _write_in(
        self,
        dir_fd: int,
        rel: str,
        real_parts: list[str],
        root_parts: list[str],
        venvs: list[_Hit],
        data: bytes,
        f: GeneratedFile,
    ) -> WrittenFile | FileError:
        name = real_parts[-1]
        frame = [*root_parts, *real_parts]
        reason = _first_unlifted([*_static_hits(frame), *venvs], frame, self._allow, len(root_parts))
        if reason:
            real_rel = "/".join(real_parts)
            if real_rel != rel:
                reason = f"'{_clip(rel)}' resolves through a symlink to '{_clip(real_rel)}': {reason}"
            return self._refuse(f.path, reason)

        st = _lstat_at(name, dir_fd)
        if st is not None and stat.S_ISLNK(st.st_mode):
            return self._refuse(f.path, "the target is a symlink; refusing to write through it (remove the link first)")
        if st is not None and stat.S_ISDIR(st.st_mode):
            return self._refuse(f.path, "a directory already exists at this path; give a file path")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # Reading a FIFO or device to compare contents could block or have side effects.
            return self._refuse(f.path, "the target exists but is not a regular file (device, FIFO or socket)")

        backup: str | None = None
        mode: int | None = None
        if st is not None:
            old = self._read_existing(dir_fd, name, st)
            if old == data:
                return self._ok(rel, f.content, "unchanged")
            mode = stat.S_IMODE(st.st_mode)
            try:
                backup = self._backup(real_parts, old, st)
            except (OSError, _Refused) as exc:
                why = _strerror(exc) if isinstance(exc, OSError) else str(exc)
                return self._refuse(f.path, f"could not back up the existing file ({why}); it was left unchanged")
        try:
            _atomic_write(dir_fd, name, data, mode)
        except OSError as exc:
            return self._refuse(f.path, f"could not write the file: {_strerror(exc)}")
        return self._ok(rel, f.content, "modified" if st is not None else "created", backup)

    @staticmethod
    def _read_existing(dir_fd: int, name: str, st: os.stat_result) -> bytes:
        # O_NOFOLLOW + O_NONBLOCK: a link or FIFO swapped in after the lstat can neither redirect nor hang the read.
        fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise _Refused("the target changed while it was being read; try again")
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _backup(self, real_parts: list[str], old: bytes, st: os.stat_result) -> str:
        """Save the old bytes under the backup directory, confined like every other write; return its path."""
        if self._backup_override is not None:
            base = self._backup_override.absolute()
            base.mkdir(parents=True, exist_ok=True)  # a directory the caller chose explicitly
            anchor = os.path.realpath(base)
            start = _open_real_dir(anchor)
            prefix: list[str] = []
        else:
            anchor = self._prepare()[2]
            start = self._open_root()[0]
            if self._backup_parts is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                self._backup_parts = [".speedrun", "backups", f"{stamp}-{secrets.token_hex(3)}"]
            prefix = self._backup_parts
        try:
            # No protection check (this is speed-run's own area) and no symlinks at all: a '.speedrun' link planted
            # by anyone must not carry backups elsewhere.
            walk = _Walk(start, [], boundary=None, allow=(), check=False, what="the backup directory")
            if prefix:
                state_fd, _ = walk.open(prefix[:1], create=True)
                try:
                    ignore = os.open(
                        ".gitignore",
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC,
                        0o666,
                        dir_fd=state_fd,
                    )
                except FileExistsError:
                    pass
                else:
                    _write_all(ignore, b"*\n")  # backups must never be committed
                    os.close(ignore)
                finally:
                    os.close(state_fd)
            dest_parts = [*prefix, *real_parts]
            dir_fd, _ = walk.open(dest_parts[:-1], create=True)
            try:
                _atomic_write(dir_fd, dest_parts[-1], old, stat.S_IMODE(st.st_mode), (st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dir_fd)
        finally:
            os.close(start)
        return os.path.join(anchor, *dest_parts)


def write_text_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Write one of speed-run's own files (a report, a worksheet) whole or not at all.

    A temp file with a unique name in the same folder, then a rename: a reader never sees half a file, and two
    writers never share a temp file. `private`: the folder becomes 0700 and the file 0600 (reports under
    SPEEDRUN_HOME name paths and test output); otherwise the file is 0644. Blocking: use asyncio.to_thread.
    """
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    if private:
        os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".speedrun-", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if not private:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
