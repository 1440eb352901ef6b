"""Git worktrees for parallel runners: start from the caller's HEAD, journal, commit, promote and clean up."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from speedrun.errors import InputError, SpeedRunError, echo
from speedrun.files import write_text_atomic
from speedrun.procs import owner_alive, process_tag
from speedrun.state.parallel import SLUG, Worktree
from speedrun.state.records import CleanedWorktree, CleanResult
from speedrun.words import plural

__all__ = [
    "Journal",
    "JournalEntry",
    "RepoState",
    "base_commit",
    "changed_files",
    "clean_orphans",
    "clean_report",
    "commit_all",
    "create_worktree",
    "discard_leftovers",
    "git_env",
    "inspect_repo",
    "journal_run_ids",
    "plan_worktrees",
    "promote",
    "remove_worktree",
]

log = logging.getLogger(__name__)

WORKTREES_DIR = ".worktrees"
INCLUDE_FILE = ".worktreeinclude"
EXCLUDE_LINE = f"/{WORKTREES_DIR}/"
#: speed-run's own per-run folder inside a workspace (the safe writer's backups): never committed.
OWN_DIR = ".speedrun"
#: Every commit speed-run makes has this author and committer, so a machine without git config works.
IDENTITY = {
    "GIT_AUTHOR_NAME": "speed-run",
    "GIT_AUTHOR_EMAIL": "speed-run@localhost",
    "GIT_COMMITTER_NAME": "speed-run",
    "GIT_COMMITTER_EMAIL": "speed-run@localhost",
}
# No hook runs (post-checkout on `worktree add`, pre-commit, commit-msg, post-merge...): they are the repo's code,
# and a signing prompt would hang a run nobody watches.
_GIT_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")
_DIRTY_SHOWN = 5
_COPY_CHUNK = 1 << 20
_exclude_lock = threading.Lock()  # two worktrees created at once must not both append the exclude line


class RepoState(BaseModel):
    """The caller's repository as found before the worktrees are made."""

    root: str = Field(description="The repository's top-level directory (real path).")
    head: str = Field(description="The commit HEAD points at.")
    branch: str | None = Field(description="The checked-out branch; None when HEAD is detached.")
    dirty: list[str] = Field(description="Tracked files with uncommitted changes (untracked files are not listed).")
    branches: list[str] = Field(default_factory=list, description="Every local branch name, to refuse a clash.")


class JournalEntry(BaseModel):
    """One worktree and branch a run made (or was about to make)."""

    repo_root: str
    name: str
    path: str
    branch: str
    state: Literal["planned", "created", "removed", "promoted"] = Field(
        description="planned: written before git ran; created: worktree and branch exist; removed: both gone; "
        "promoted: the branch was handed to the user (kept or merged) and clean never touches it."
    )
    updated: str = Field(description="When the state last changed (UTC, ISO 8601).")

    @property
    def worktree(self) -> Worktree:
        """The entry as the Worktree record the services take."""
        return Worktree(name=self.name, path=self.path, branch=self.branch)


class _JournalFile(BaseModel):
    run_id: str
    owner: str | None = Field(description="process_tag of the process that last wrote the journal.")
    entries: list[JournalEntry] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# running git


def git_env() -> dict[str, str]:
    """The environment every git call gets: the test allow-list (no key, token or password), no prompts, our name.

    speedrun.sandbox.scrubbed_env owns the rule for what may leave the process; it also drops a caller's
    GIT_DIR / GIT_WORK_TREE, which would point our commands at another repository.
    """
    from speedrun.sandbox import scrubbed_env

    env = scrubbed_env()
    env.update(IDENTITY, GIT_TERMINAL_PROMPT="0")
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


async def _git(cwd: str | Path, *args: str, check: bool = True, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run one git command (no shell) in `cwd`: (exit code, stdout, stderr); SpeedRunError on failure if `check`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *_GIT_OPTIONS,
            *args,
            cwd=str(cwd),
            env=git_env(),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise SpeedRunError("git is not installed (or not on PATH); install git to run parallel runners") from None
    out, err = await proc.communicate(stdin)
    code = proc.returncode if proc.returncode is not None else -1
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if check and code != 0:
        command = " ".join(("git", *args))
        raise SpeedRunError(f"`{command[:200]}` failed in {str(cwd)[:200]}: {_last_line(stderr)}")
    return code, stdout, stderr


def _z(text: str) -> list[str]:
    return [part for part in text.split("\0") if part]


# --------------------------------------------------------------------------------------------------
# the caller's repository


async def inspect_repo(repo: str) -> RepoState:
    """The repository at `repo`: its root, HEAD, branch and tracked changes. InputError when it is not one."""
    path = Path(repo).expanduser()
    if not await asyncio.to_thread(path.is_dir):
        raise InputError(f"repo {echo(repo, 200)} is not a directory; pass the path of a git repository.")
    code, out, _ = await _git(path, "rev-parse", "--show-toplevel", check=False)
    if code != 0 or not out.strip():
        raise InputError(
            f"repo {echo(repo, 200)} is not inside a git work tree; pass a repository's path, "
            "or create one with `git init` and a first commit."
        )
    root = await asyncio.to_thread(os.path.realpath, out.strip())
    code, head, _ = await _git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    if code != 0:
        raise InputError(
            f"repo {echo(root, 200)} has no commits yet; commit once, since the worktrees start from HEAD."
        )
    code, branch, _ = await _git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    _, status, _ = await _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    _, refs, _ = await _git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    return RepoState(
        root=root,
        head=head.strip(),
        branch=branch.strip() if code == 0 and branch.strip() else None,
        dirty=_dirty_paths(status),
        branches=refs.split(),
    )


def _dirty_paths(porcelain: str) -> list[str]:
    """Paths from `git status --porcelain=v1 -z`; a rename's entry is followed by its old path, which is skipped."""
    parts, paths, i = porcelain.split("\0"), [], 0
    while i < len(parts):
        entry = parts[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if "R" in entry[:2] or "C" in entry[:2]:
            i += 1
    return paths


async def base_commit(state: RepoState, include_uncommitted: bool) -> str:
    """The commit every worktree starts from: HEAD, or a snapshot of tracked changes (`git stash create`).

    The snapshot leaves the caller's files, index and stash list as they were. A dirty tree without
    include_uncommitted is refused, naming up to five of the changed files.
    """
    if not state.dirty:
        return state.head
    if not include_uncommitted:
        shown = ", ".join(p[:120] for p in state.dirty[:_DIRTY_SHOWN])
        more = f" and {len(state.dirty) - _DIRTY_SHOWN} more" if len(state.dirty) > _DIRTY_SHOWN else ""
        raise InputError(
            f"repo {echo(state.root, 200)} has uncommitted changes to tracked files ({shown}{more}); the runners "
            "start from HEAD and would not see them. Commit or stash them first, or pass include_uncommitted "
            "(CLI --include-uncommitted) to start every worktree from a snapshot of them."
        )
    _, out, _ = await _git(state.root, "stash", "create", "speed-run: uncommitted changes")
    return out.strip() or state.head  # empty when the changes cancel out (e.g. a file touched but not changed)


def plan_worktrees(state: RepoState, feature: str, names: list[str]) -> list[Worktree]:
    """One worktree per name: <root>/.worktrees/speed-run-<name> on branch <feature>/speed-run/<name>.

    InputError when a name is not a slug, repeats, or its branch or path already exists (or a branch's name
    clashes, like an existing branch `<feature>`). Checks the paths on disk: blocking, but only a few stats.
    """
    if not SLUG.match(feature):
        raise InputError(f"feature {echo(feature, 60)} is not a slug; use lowercase letters, digits and dashes.")
    bad = [n for n in names if not _NAME.match(n)]
    if bad or len(set(names)) != len(names):
        raise InputError(f"runner names must be distinct slugs (e.g. runner-1, variant-sqlite); got {names[:5]!r}")
    existing = set(state.branches)
    planned = []
    for name in names:
        branch, path = f"{feature}/speed-run/{name}", Path(state.root, WORKTREES_DIR, f"speed-run-{name}")
        clash = _branch_clash(branch, existing)
        if clash:
            raise InputError(
                f"branch {clash!r} already exists, so {branch!r} cannot be created; remove what an earlier run "
                "left with `speedrun clean` (or `git branch -D` it if it is yours), or pick another feature slug."
            )
        if os.path.lexists(path):
            raise InputError(
                f"worktree path {str(path)[:200]!r} already exists; remove what an earlier run left with "
                f"`speedrun clean` (or `git worktree remove --force {str(path)[:200]}`)."
            )
        planned.append(Worktree(name=name, path=str(path), branch=branch))
    return planned


def _branch_clash(branch: str, existing: set[str]) -> str | None:
    """The existing branch that stops `branch` being made: itself, a prefix folder (`feat`), or one below it."""
    parts = branch.split("/")
    for i in range(1, len(parts) + 1):
        if "/".join(parts[:i]) in existing:
            return "/".join(parts[:i])
    below = sorted(b for b in existing if b.startswith(branch + "/"))
    return below[0] if below else None


# --------------------------------------------------------------------------------------------------
# the journal


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Journal:
    """A run's record of every worktree and branch, written BEFORE git creates them, so a crash leaves none unknown.

    The file is SPEEDRUN_HOME/runs/<run_id>/worktrees.json (private, written atomically); it names the process
    that last wrote it, so `clean_orphans` can tell a dead run from a live one. Methods block: use to_thread.
    """

    def __init__(self, path: Path, run_id: str) -> None:
        """A journal at `path`; read lazily, so making one touches no file."""
        self.path = path
        self.run_id = run_id
        self._lock = threading.Lock()
        self._data: _JournalFile | None = None

    @classmethod
    def for_run(cls, home: Path, run_id: str) -> Journal:
        """The journal of run `run_id` under SPEEDRUN_HOME."""
        if not run_id or run_id in {".", ".."} or any(c in run_id for c in "/\\\0"):
            raise InputError(f"run id {echo(run_id, 80)} cannot name a folder; use the id speed-run gave the run.")
        return cls(Path(home) / "runs" / run_id / "worktrees.json", run_id)

    def _load(self) -> _JournalFile:
        if self._data is None:
            self._data = _read_journal(self.path) or _JournalFile(run_id=self.run_id, owner=None)
        return self._data

    def _save(self, data: _JournalFile) -> None:
        data.owner = process_tag()  # whoever writes owns the run now (a resume takes it over)
        write_text_atomic(self.path, data.model_dump_json(indent=1), private=True)

    def record(self, repo_root: str, wt: Worktree) -> None:
        """Write `wt` as planned; an entry for the same path is replaced (a retried prepare)."""
        with self._lock:
            data = self._load()
            entry = JournalEntry(repo_root=repo_root, **wt.model_dump(), state="planned", updated=_now())
            data.entries = [e for e in data.entries if e.path != wt.path] + [entry]
            self._save(data)

    def mark(self, wt: Worktree, state: Literal["created", "removed", "promoted"]) -> None:
        """Move `wt`'s entry to `state`; a worktree never recorded is an error in the caller."""
        with self._lock:
            data = self._load()
            entry = next((e for e in data.entries if e.path == wt.path), None)
            if entry is None:
                raise SpeedRunError(f"worktree {wt.name!r} is not in the journal of run {self.run_id!r}")
            entry.state, entry.updated = state, _now()
            self._save(data)

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first."""
        with self._lock:
            return [e.model_copy() for e in self._load().entries]

    def owner(self) -> str | None:
        """The process tag of the journal's last writer."""
        with self._lock:
            return self._load().owner


def _read_journal(path: Path) -> _JournalFile | None:
    try:
        return _JournalFile.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, json.JSONDecodeError) as exc:
        log.warning("unreadable worktree journal %s: %s", path, exc)
        return None


# --------------------------------------------------------------------------------------------------
# creating a worktree


async def create_worktree(state: RepoState, wt: Worktree, base: str, journal: Journal) -> None:
    """Journal `wt`, then `git worktree add -b` it at `base` and copy the ignored files `.worktreeinclude` lists."""
    await asyncio.to_thread(journal.record, state.root, wt)
    _, common, _ = await _git(state.root, "rev-parse", "--git-common-dir")
    await asyncio.to_thread(_exclude_worktrees, Path(state.root, common.strip()))
    code, _, err = await _git(state.root, "worktree", "add", "-b", wt.branch, wt.path, base, check=False)
    if code != 0:
        if "already exists" in err:  # nothing of ours was made: the entry must not lead clean to someone's branch
            await asyncio.to_thread(journal.mark, wt, "removed")
            raise InputError(
                f"cannot create worktree {wt.name!r}: {_last_line(err)}; remove the leftover with `speedrun clean` "
                "or pick another feature slug."
            )
        raise SpeedRunError(f"`git worktree add` for {wt.name!r} failed in {state.root[:200]}: {_last_line(err)}")
    await asyncio.to_thread(journal.mark, wt, "created")
    includes = await _included_files(state.root)
    if includes:
        skipped = await asyncio.to_thread(_copy_files, state.root, wt.path, includes)
        for rel, why in skipped:
            log.warning("%s: not copied into %s: %s", rel, wt.name, why)


def _exclude_worktrees(common_dir: Path) -> None:
    """Add /.worktrees/ to the repository's own exclude file once (never to the tracked .gitignore)."""
    info = common_dir / "info"
    exclude = info / "exclude"
    with _exclude_lock:
        info.mkdir(parents=True, exist_ok=True)
        try:
            text = exclude.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        if EXCLUDE_LINE in (line.strip() for line in text.splitlines()):
            return
        fd = os.open(exclude, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            sep = "" if not text or text.endswith("\n") else "\n"
            out.write(f"{sep}# speed-run's runner worktrees\n{EXCLUDE_LINE}\n")


async def _included_files(root: str) -> list[str]:
    """Files `.worktreeinclude` lists (gitignore patterns) that git ignores: the convention Claude Code uses."""
    include = Path(root, INCLUDE_FILE)
    info = await asyncio.to_thread(_lstat, include)
    if info is None or not stat.S_ISREG(info.st_mode):  # missing, or a symlink we will not follow
        return []
    _, listed, _ = await _git(root, "ls-files", "-z", "--others", "--ignored", f"--exclude-from={include}")
    candidates = [p for p in _z(listed) if not p.startswith((f"{WORKTREES_DIR}/", ".git/"))]
    if not candidates:
        return []
    _, ignored, _ = await _git(root, "check-ignore", "-z", "--stdin", stdin="\0".join(candidates).encode(), check=False)
    return _z(ignored)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _open_dir(root_fd: int, parts: Sequence[str], *, create: bool) -> int:
    """Open the folder `parts` below root_fd, one component at a time, never through a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_files(src_root: str, dst_root: str, paths: Iterable[str]) -> list[tuple[str, str]]:
    """Copy regular files from one tree to the other by relative path; returns (path, why) of each one skipped.

    Every component is opened with O_NOFOLLOW on both sides, so a symlink (the file or a folder on the way) is
    skipped and nothing is written outside the destination; an existing destination file is left alone.
    """
    skipped = []
    src_fd = os.open(src_root, os.O_RDONLY | os.O_DIRECTORY)
    dst_fd = os.open(dst_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for rel in paths:
            parts = rel.split("/")
            if any(p in {"", ".", ".."} for p in parts):
                skipped.append((rel, "not a plain relative path"))
                continue
            try:
                _copy_one(src_fd, dst_fd, parts)
            except OSError as exc:
                skipped.append((rel, _copy_error(exc)))
            except ValueError as exc:
                skipped.append((rel, str(exc)))
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return skipped


def _copy_error(exc: OSError) -> str:
    if exc.errno in {errno.ELOOP, errno.ENOTDIR}:
        return "it is (or lies under) a symlink, which is never followed"
    if exc.errno == errno.EEXIST:
        return "the worktree already has this file"
    return exc.strerror or str(exc)


def _copy_one(src_root_fd: int, dst_root_fd: int, parts: list[str]) -> None:
    sdir = _open_dir(src_root_fd, parts[:-1], create=False)
    try:
        # O_NONBLOCK: a FIFO must not hang the copy; it is refused below as not a regular file.
        src = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=sdir)
    finally:
        os.close(sdir)
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        ddir = _open_dir(dst_root_fd, parts[:-1], create=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            dst = os.open(parts[-1], flags, stat.S_IMODE(info.st_mode), dir_fd=ddir)
        finally:
            os.close(ddir)
        try:
            while chunk := os.read(src, _COPY_CHUNK):
                os.write(dst, chunk)
        finally:
            os.close(dst)
    finally:
        os.close(src)


# --------------------------------------------------------------------------------------------------
# a runner's work


async def commit_all(wt: Worktree, message: str) -> str | None:
    """Commit everything in the worktree (but speed-run's own folder); the new commit's sha, None if nothing changed."""
    await _git(wt.path, "add", "-A", "--", ".", f":(exclude){OWN_DIR}")
    code, _, _ = await _git(wt.path, "diff", "--cached", "--quiet", check=False)
    if code == 0:
        return None
    await _git(wt.path, "commit", "-q", "--no-verify", "-m", message)
    _, sha, _ = await _git(wt.path, "rev-parse", "HEAD")
    return sha.strip()


async def changed_files(wt: Worktree, base: str) -> list[str]:
    """Paths that differ from `base` in the worktree: committed, staged, changed or new (not ignored)."""
    _, diff, _ = await _git(wt.path, "diff", "--name-only", "-z", "--no-renames", base)
    _, new, _ = await _git(wt.path, "ls-files", "-z", "--others", "--exclude-standard")
    return sorted(p for p in {*_z(diff), *_z(new)} if p != OWN_DIR and not p.startswith(f"{OWN_DIR}/"))


# --------------------------------------------------------------------------------------------------
# removing and promoting


async def remove_worktree(state_root: str, wt: Worktree, journal: Journal, *, keep_branch: bool = False) -> None:
    """Remove the worktree (and its branch unless keep_branch); what is already gone is fine. Journals the result."""
    code, _, err = await _git(state_root, "worktree", "remove", "--force", "--force", wt.path, check=False)
    if code != 0 and await asyncio.to_thread(os.path.lexists, wt.path):
        # Not a registered worktree any more (git lost track of it) but the folder is ours: the journal says so.
        if not await asyncio.to_thread(_remove_own_dir, state_root, wt.path):
            raise SpeedRunError(f"could not remove worktree {wt.path[:200]}: {_last_line(err)}")
    await _git(state_root, "worktree", "prune")
    if not keep_branch:
        code, _, err = await _git(state_root, "branch", "-D", wt.branch, check=False)
        if code != 0 and "not found" not in err:
            raise SpeedRunError(f"`git branch -D {wt.branch}` failed in {state_root[:200]}: {_last_line(err)}")
    await asyncio.to_thread(journal.mark, wt, "promoted" if keep_branch else "removed")


def _remove_own_dir(root: str, path: str) -> bool:
    """Delete a leftover worktree folder, only when it is a real folder directly under <root>/.worktrees/."""
    folder = Path(path)
    if folder.parent != Path(root, WORKTREES_DIR) or folder.is_symlink() or not folder.is_dir():
        return False
    shutil.rmtree(folder)
    return True


async def promote(state_root: str, wt: Worktree, mode: Literal["branch", "merge"], journal: Journal) -> str:
    """Hand the winner to the user; one line saying what happened.

    branch: the worktree goes, the branch stays. merge: the worktree goes and the branch is merged (--no-ff) into
    the caller's current branch, then deleted. A merge is refused (InputError, branch kept) when the caller's tree
    has tracked changes or HEAD is detached; a conflict is aborted (SpeedRunError, branch kept, tree as before).
    """
    if mode == "branch":
        await remove_worktree(state_root, wt, journal, keep_branch=True)
        return f"kept branch {wt.branch}; merge it with `git merge {wt.branch}`"
    repo = await inspect_repo(state_root)
    await remove_worktree(state_root, wt, journal, keep_branch=True)
    if repo.branch is None or repo.dirty:
        why = (
            "HEAD is detached"
            if repo.branch is None
            else f"{plural(len(repo.dirty), 'tracked file')} with uncommitted changes"
        )
        raise InputError(
            f"did not merge {wt.branch}: {why}. The branch is kept; check out a branch with a clean tree and run "
            f"`git merge --no-ff {wt.branch}`, or use promote=branch."
        )
    code, _, err = await _git(
        state_root, "merge", "--no-ff", "--no-edit", "-m", f"speed-run: merge {wt.branch}", wt.branch, check=False
    )
    if code != 0:
        in_merge, _, _ = await _git(state_root, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False)
        if in_merge == 0:
            await _git(state_root, "merge", "--abort")
        raise SpeedRunError(
            f"merging {wt.branch} into {repo.branch} failed and was undone ({_last_line(err)}); the branch is kept: "
            f"resolve it by hand with `git merge {wt.branch}`."
        )
    _, sha, _ = await _git(state_root, "rev-parse", "--short=12", "HEAD")
    await _git(state_root, "branch", "-D", wt.branch)
    return f"merged {wt.branch} into {repo.branch} ({sha.strip()}) and deleted the branch"


async def discard_leftovers(journal: Journal) -> list[str]:
    """Remove the worktrees and branches the journal lists as planned or created; one line per entry removed."""
    return (await _discard(journal)).lines()


async def _discard(journal: Journal) -> CleanResult:
    """Remove what the journal lists as planned or created: what went (typed) and what could not."""
    done, roots = CleanResult(), set()
    for entry in journal.entries():
        if entry.state not in {"planned", "created"}:
            continue
        roots.add(entry.repo_root)
        if not await asyncio.to_thread(os.path.isdir, entry.repo_root):
            await asyncio.to_thread(journal.mark, entry.worktree, "removed")  # the repository itself is gone
            continue
        try:
            await remove_worktree(entry.repo_root, entry.worktree, journal)
        except SpeedRunError as exc:
            done.problems.append(f"run {journal.run_id}: could not remove {entry.name}: {exc}")
            continue
        done.removed.append(
            CleanedWorktree(run_id=journal.run_id, name=entry.name, path=entry.path, branch=entry.branch)
        )
    for root in roots:
        if await asyncio.to_thread(os.path.isdir, root):
            await _git(root, "worktree", "prune", check=False)
    return done


#: What a clean that removed something says about the runs it touched.
CLEANED_NOTE = "runs cleaned here lost their runners' worktrees and unpromoted branches: they can no longer be resumed"


async def clean_report(home: Path, *, live_run_ids: Iterable[str] = frozenset()) -> CleanResult:
    """Remove the worktrees and branches of orphaned runs (see `_orphaned`), from their journals; what went.

    A run cleaned this way loses its runners' worktrees and unpromoted branches: resuming it afterwards finds
    nothing to continue in, so clean the runs you will not resume.
    """
    live = set(live_run_ids)
    report = CleanResult()
    for path in await asyncio.to_thread(_journal_paths, home):
        journal = Journal(path, path.parent.name)
        if not await asyncio.to_thread(_orphaned, journal, live):
            continue
        found = await _discard(journal)
        report.removed += found.removed
        report.problems += found.problems
    report.note = CLEANED_NOTE if report.removed else "nothing to clean: no run left worktrees or branches behind"
    return report


async def clean_orphans(home: Path, *, live_run_ids: Iterable[str] = frozenset()) -> list[str]:
    """`clean_report` as lines: one per worktree removed, then one per problem."""
    return (await clean_report(home, live_run_ids=live_run_ids)).lines()


def _journal_paths(home: Path) -> list[Path]:
    return sorted(Path(home, "runs").glob("*/worktrees.json"))


def journal_run_ids(home: Path) -> list[str]:
    """The ids of the runs that have a worktree journal under SPEEDRUN_HOME. Blocking (lists a folder)."""
    return [path.parent.name for path in _journal_paths(home)]


def _orphaned(journal: Journal, live: set[str]) -> bool:
    """A run nobody drives: not live in this process, and its journal's owner is dead or is this very process.

    The second case is a run cancelled (or ended by an error) in a server that is still up: its owner is alive
    but the run is not, so its worktrees are orphans too. Blocking (reads the journal).
    """
    if journal.run_id in live:
        return False
    owner = journal.owner()
    return owner == process_tag() or not owner_alive(owner)
