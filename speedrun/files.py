"""Write generated files safely under an output directory: path checks, atomic writes, backups."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

from speedrun.errors import FileProtocolError
from speedrun.state.records import FileError, GeneratedFile, WriteReport, WrittenFile

__all__ = ["SafeWriter", "normalize_relpath"]

# --------------------------------------------------------------------------------------------------
# Path safety
# --------------------------------------------------------------------------------------------------

_DRIVE_RE = re.compile(r"^[A-Za-z]:")

# Locations whose contents get executed or loaded by tools outside the test run.
_PROTECTED_DIRS = {
    ".git": "git runs hooks from it (e.g. .git/hooks/pre-commit), so code there would run outside the tests",
    ".speedrun": "it holds speed-run's own state and backups, which generated code must not overwrite",
    ".claude": "Claude Code loads settings and runs hooks from it, so code there would run outside the tests",
    ".vscode": "the editor loads settings and runs tasks from it, so code there would run outside the tests",
    ".idea": "the IDE loads settings and run configurations from it, so code there would run outside the tests",
}
_PROTECTED_FILES = {
    ".envrc": "direnv executes it when a shell enters the directory, outside the tests",
    ".mcp.json": "Claude Code launches the MCP servers it lists, outside the tests",
}


def _protected_reason(parts: list[str]) -> str | None:
    # casefold: on case-insensitive filesystems .GIT is .git.
    for part in parts[:-1]:
        why = _PROTECTED_DIRS.get(part.casefold())
        if why:
            return f"refusing to write inside '{part}': {why}; put the file elsewhere"
    last = parts[-1].casefold()
    why = _PROTECTED_DIRS.get(last) or _PROTECTED_FILES.get(last)
    if why:
        return f"refusing to write '{parts[-1]}': {why}; put the file elsewhere"
    return None


def normalize_relpath(path: str) -> str:
    """Return the normalized relative POSIX path, or raise FileProtocolError saying exactly why it is unsafe."""
    if not path or not path.strip():
        raise FileProtocolError("empty path: name the file relative to the output directory, e.g. src/app.py")
    if "\x00" in path:
        raise FileProtocolError("path contains a NUL byte; give a plain relative path such as src/app.py")
    for ch in path:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            raise FileProtocolError(
                f"path contains control character U+{ord(ch):04X} ({ch!r}); a path must be one plain line"
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
    reason = _protected_reason(parts)
    if reason:
        raise FileProtocolError(reason)
    return "/".join(parts)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _count_lines(content: str) -> int:
    # Not splitlines(): it also splits on \r, \f, \x1c, U+2028 ..., which are not line ends in code.
    if not content:
        return 0
    return content.count("\n") + (0 if content.endswith("\n") else 1)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class SafeWriter:
    """Writes generated files under one root: refuses unsafe paths, writes atomically, backs up what it replaces."""

    def __init__(self, root: Path, *, max_file_bytes: int = 1_000_000, backup_dir: Path | None = None) -> None:
        """Create the root if missing; backup_dir overrides the per-run backup directory."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        # Resolved once so every containment check compares real locations.
        self._root = root.resolve()
        self._max = max_file_bytes
        self._backup_override = Path(backup_dir) if backup_dir is not None else None
        self._backup_root: Path | None = None
        self._outcomes: dict[str, bool] = {}  # normalized path -> was it written
        self._written: list[WrittenFile] = []
        self._errors: list[FileError] = []

    @property
    def report(self) -> WriteReport:
        """Everything written or refused so far, in order."""
        return WriteReport(files_written=list(self._written), errors=list(self._errors))

    def write(self, f: GeneratedFile) -> WrittenFile | FileError:
        """Write one file; never raises for a bad file, returns a FileError saying why instead."""
        try:
            rel = normalize_relpath(f.path)
        except FileProtocolError as exc:
            return self._refuse(f.path, str(exc))
        if rel in self._outcomes:
            if self._outcomes[rel]:
                return self._refuse(f.path, "duplicate path; the first copy was kept")
            return self._refuse(f.path, "duplicate path; the first copy was refused, so this one is refused too")
        result = self._write_new(rel, f)
        self._outcomes[rel] = isinstance(result, WrittenFile)
        return result

    # -- internals ---------------------------------------------------------------------------------

    def _refuse(self, path: str, why: str) -> FileError:
        err = FileError(path=path, error=why)
        self._errors.append(err)
        return err

    def _ok(self, rel: str, content: str, action: str, backup: Path | None = None) -> WrittenFile:
        done = WrittenFile(
            path=rel,
            filename=rel.rsplit("/", 1)[-1],
            lines=_count_lines(content),
            action=action,
            backup=str(backup) if backup is not None else None,
        )
        self._written.append(done)
        return done

    def _parent_problem(self, rel: str, parts: list[str]) -> str | None:
        # Walk existing components so the message names the offending one.
        cur = self._root
        for i, part in enumerate(parts[:-1]):
            cur = cur / part
            shown = "/".join(parts[: i + 1])
            if os.path.islink(cur):
                real = Path(os.path.realpath(cur))
                if not _inside(real, self._root):
                    return (
                        f"'{shown}' is a symlink to {real}, outside the output directory; "
                        "refusing to write through it"
                    )
                if os.path.exists(cur) and not os.path.isdir(cur):
                    return f"'{shown}' is a symlink to a file, not a directory, so '{rel}' cannot be created under it"
            elif os.path.lexists(cur) and not os.path.isdir(cur):
                return f"'{shown}' exists and is not a directory, so '{rel}' cannot be created under it"
        return self._containment_problem(rel, Path(os.path.realpath(self._root.joinpath(*parts[:-1]))))

    def _containment_problem(self, rel: str, real_parent: Path) -> str | None:
        if not _inside(real_parent, self._root):
            return f"'{rel}' resolves to {real_parent}, outside the output directory; refusing to write there"
        real_parts = [*real_parent.relative_to(self._root).parts, rel.rsplit("/", 1)[-1]]
        reason = _protected_reason(real_parts)
        if reason:
            return f"'{rel}' resolves through a symlink to '{'/'.join(real_parts)}': {reason}"
        return None

    def _write_new(self, rel: str, f: GeneratedFile) -> WrittenFile | FileError:
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
        parts = rel.split("/")
        target = self._root.joinpath(*parts)
        parent = target.parent

        problem = self._parent_problem(rel, parts)
        if problem:
            return self._refuse(f.path, problem)
        if os.path.islink(target):
            return self._refuse(f.path, "the target is a symlink; refusing to write through it (remove the link first)")
        if os.path.isdir(target):
            return self._refuse(f.path, "a directory already exists at this path; give a file path")
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            return self._refuse(f.path, f"cannot inspect the target: {exc.strerror or exc}")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # Reading a FIFO or device to compare contents could block or have side effects.
            return self._refuse(f.path, "the target exists but is not a regular file (device, FIFO or socket)")

        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            shown = "/".join(parts[:-1])
            return self._refuse(f.path, f"could not create directory '{shown}': {exc.strerror or exc}")
        # Re-check after creation: a component may have been swapped for a symlink meanwhile.
        real_parent = Path(os.path.realpath(parent))
        problem = self._containment_problem(rel, real_parent)
        if problem:
            return self._refuse(f.path, problem)

        backup: Path | None = None
        if st is not None:
            if st.st_size == len(data) and target.read_bytes() == data:
                return self._ok(rel, f.content, "unchanged")
            try:
                backup = self._backup(rel, target)
            except OSError as exc:
                return self._refuse(
                    f.path, f"could not back up the existing file ({exc.strerror or exc}); it was left unchanged"
                )

        tmp: str | None = None
        try:
            tmp, fd = self._open_temp(parent, parts[-1])
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if st is not None:
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            return self._refuse(f.path, f"could not write the file: {exc.strerror or exc}")
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return self._ok(rel, f.content, "modified" if st is not None else "created", backup)

    @staticmethod
    def _open_temp(parent: Path, name: str) -> tuple[str, int]:
        # Same directory as the target so os.replace stays atomic (no cross-device move). Mode 0o666 lets
        # the umask decide, like a normal new file (mkstemp would force 0o600). O_EXCL never follows a link.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        while True:
            tmp = str(parent / f".{name[:100]}.{secrets.token_hex(4)}.tmp")
            try:
                return tmp, os.open(tmp, flags, 0o666)
            except FileExistsError:
                continue

    def _backup(self, rel: str, target: Path) -> Path:
        if self._backup_root is None:
            if self._backup_override is not None:
                root = self._backup_override
            else:
                state_dir = self._root / ".speedrun"
                state_dir.mkdir(exist_ok=True)
                ignore = state_dir / ".gitignore"
                if not ignore.exists():
                    ignore.write_text("*\n")  # backups must never be committed
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                root = state_dir / "backups" / f"{stamp}-{secrets.token_hex(3)}"
            root.mkdir(parents=True, exist_ok=True)
            self._backup_root = root.resolve()
        dest = self._backup_root.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, dest)
        return dest
