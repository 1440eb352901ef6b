"""Git worktrees for parallel runners, against real temporary repositories: base, includes, journal, promote, clean."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError, SpeedRunError
from speedrun.nodes.prepare_worktrees import prepare_worktrees
from speedrun.nodes.promote import promote as promote_node
from speedrun.state.judge import Decision, JudgeResult
from speedrun.state.parallel import AnyPercentState, Approach, ShowdownState
from speedrun.worktrees import (
    Journal,
    base_commit,
    changed_files,
    clean_orphans,
    commit_all,
    create_worktree,
    inspect_repo,
    plan_worktrees,
    promote,
    remove_worktree,
)

pytestmark = pytest.mark.anyio
REAL_GIT = shutil.which("git") or "git"
ROOT = Path(__file__).resolve().parents[1]


def git(cwd: Path | str, *args: str) -> str:
    """The test's own git (with a throwaway identity), for setting up and looking at repositories."""
    done = subprocess.run(
        [REAL_GIT, "-c", "user.name=Tester", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def worktree_paths(repo: Path) -> list[str]:
    return [
        line[9:] for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")
    ]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (no ~/.gitconfig: a machine where git was never configured) and a SPEEDRUN_HOME."""
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "speedrun-home"


@pytest.fixture
def repo(tmp_path: Path, home: Path) -> Path:
    """main has one commit; HEAD is on `work`, one commit further; ignored and untracked files lie around."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "base.py").write_text("VALUE = 1\n")
    (root / ".gitignore").write_text(".env\nconfig/local/\nlink.env\n*.log\n")
    (root / ".worktreeinclude").write_text("# files the tests need\n.env\nconfig/local/\nlink.env\nnotes.txt\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "work")
    (root / "work.py").write_text("WORK = True\n")
    git(root, "add", "work.py")
    git(root, "commit", "-q", "-m", "work")
    (root / ".env").write_text("API_URL=http://localhost:8000\n")
    (root / "config" / "local").mkdir(parents=True)
    (root / "config" / "local" / "settings.json").write_text('{"debug": true}\n')
    (root / "debug.log").write_text("ignored, but not listed in .worktreeinclude\n")
    (root / "notes.txt").write_text("listed, but not ignored: git would see it, so it is not copied\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("must never be copied\n")
    (root / "link.env").symlink_to(outside / "secret.txt")
    return root


async def make(repo: Path, home: Path, names: list[str], run_id: str = "run-1", feature: str = "feat"):
    state = await inspect_repo(str(repo))
    base = await base_commit(state, include_uncommitted=False)
    journal = Journal.for_run(home, run_id)
    planned = plan_worktrees(state, feature, names)
    for wt in planned:
        await create_worktree(state, wt, base, journal)
    return state, base, journal, planned


# --------------------------------------------------------------------------------------------------
# prepare


async def test_worktrees_start_from_the_callers_head_with_the_included_ignored_files(repo: Path, home: Path) -> None:
    hooks = repo / ".git" / "hooks"
    (hooks / "post-checkout").write_text(f"#!/bin/sh\ntouch {repo.parent / 'hook-ran'}\n")
    (hooks / "post-checkout").chmod(0o755)
    gitignore_before = (repo / ".gitignore").read_text()
    state, base, journal, planned = await make(repo, home, ["runner-1", "runner-2"])

    assert state.branch == "work" and base == git(repo, "rev-parse", "work") != git(repo, "rev-parse", "main")
    for wt in planned:
        path = Path(wt.path)
        assert path == repo / ".worktrees" / f"speed-run-{wt.name}"
        assert git(path, "rev-parse", "HEAD") == base
        assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == f"feat/speed-run/{wt.name}"
        assert (path / "work.py").read_text() == "WORK = True\n"
        assert (path / ".env").read_text() == "API_URL=http://localhost:8000\n"
        assert (path / "config" / "local" / "settings.json").read_text() == '{"debug": true}\n'
        assert not os.path.lexists(path / "link.env"), "a symlinked include target must not be followed"
        assert not (path / "debug.log").exists() and not (path / "notes.txt").exists()
        assert git(path, "status", "--porcelain") == ""  # the copied files are ignored there too
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("/.worktrees/") == 1
    assert (repo / ".gitignore").read_text() == gitignore_before
    assert "worktrees" not in git(repo, "status", "--porcelain", "--untracked-files=all")
    assert not (repo.parent / "hook-ran").exists(), "no hook of the repository may run"
    assert [(e.name, e.state) for e in journal.entries()] == [("runner-1", "created"), ("runner-2", "created")]
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


async def test_uncommitted_changes_are_refused_or_snapshotted_without_touching_the_callers_tree(
    repo: Path, home: Path
) -> None:
    (repo / "base.py").write_text("VALUE = 2  # not committed\n")
    for i in range(6):
        (repo / f"extra{i}.py").write_text("x = 1\n")
    git(repo, "add", *[f"extra{i}.py" for i in range(6)])
    state = await inspect_repo(str(repo))
    assert "base.py" in state.dirty and len(state.dirty) == 7

    with pytest.raises(InputError) as refused:
        await base_commit(state, include_uncommitted=False)
    message = str(refused.value)
    assert "base.py" in message and "and 2 more" in message
    assert "include_uncommitted" in message and "Commit or stash" in message

    snapshot = await base_commit(state, include_uncommitted=True)
    assert snapshot != state.head
    wt = plan_worktrees(state, "feat", ["runner-1"])[0]
    await create_worktree(state, wt, snapshot, Journal.for_run(home, "run-dirty"))
    assert (Path(wt.path) / "base.py").read_text() == "VALUE = 2  # not committed\n"
    assert (Path(wt.path) / "extra5.py").exists()
    assert (repo / "base.py").read_text() == "VALUE = 2  # not committed\n"
    assert git(repo, "stash", "list") == ""
    assert sorted(git(repo, "diff", "--cached", "--name-only").split()) == [f"extra{i}.py" for i in range(6)]


async def test_dirty_files_are_named_through_renames_spaces_and_non_ascii_names(repo: Path, home: Path) -> None:
    git(repo, "mv", "work.py", "moved work.py")
    (repo / "naïve café.py").write_text("x = 1\n")
    git(repo, "add", "naïve café.py")
    (repo / "base.py").write_text("VALUE = 5\n")

    state = await inspect_repo(str(repo))

    assert sorted(state.dirty) == ["base.py", "moved work.py", "naïve café.py"]  # the rename's old name is skipped
    with pytest.raises(InputError, match="moved work.py"):
        await base_commit(state, include_uncommitted=False)


async def test_existing_branches_and_paths_are_refused_by_name(repo: Path, home: Path) -> None:
    git(repo, "branch", "feat/speed-run/runner-2")
    state = await inspect_repo(str(repo))
    with pytest.raises(InputError, match=r"'feat/speed-run/runner-2' already exists.*speedrun clean"):
        plan_worktrees(state, "feat", ["runner-1", "runner-2"])

    git(repo, "branch", "other")  # a branch named like the feature's folder blocks every branch under it
    state = await inspect_repo(str(repo))
    with pytest.raises(InputError, match=r"branch 'other' already exists.*another feature slug"):
        plan_worktrees(state, "other", ["runner-1"])

    (repo / ".worktrees" / "speed-run-runner-1").mkdir(parents=True)
    with pytest.raises(InputError, match=r"speed-run-runner-1' already exists"):
        plan_worktrees(state, "fresh", ["runner-1"])


async def test_a_path_that_is_no_repository_is_refused_with_the_fix(tmp_path: Path, home: Path) -> None:
    with pytest.raises(InputError, match="is not a directory"):
        await inspect_repo(str(tmp_path / "missing"))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="not inside a git work tree.*git init"):
        await inspect_repo(str(plain))
    git(plain, "init", "-q")
    with pytest.raises(InputError, match="no commits yet"):
        await inspect_repo(str(plain))


async def test_no_secret_reaches_git_and_commits_work_without_git_config(
    repo: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim_dir, dumps = tmp_path / "shim", tmp_path / "dumps"
    shim_dir.mkdir()
    dumps.mkdir()
    (shim_dir / "git").write_text(f'#!/bin/sh\nenv > "{dumps}/env.$$"\nexec "{REAL_GIT}" "$@"\n')
    (shim_dir / "git").chmod(0o755)
    secrets = {
        "CEREBRAS_API_KEY": "csk-live-abcdef123456",
        "GITHUB_TOKEN": "ghp_abcdefghijklmnop",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "DB_PASSWORD": "hunter2hunter2",
        "HTTPS_PROXY": "http://user:pa55word@proxy:3128",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # would point git at another repository
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    (Path(os.environ["HOME"]) / ".gitconfig").write_text("[commit]\n\tgpgsign = true\n")  # no key: would fail

    _, base, _, (wt,) = await make(repo, home, ["runner-1"])
    (Path(wt.path) / "app.py").write_text("print('hi')\n")
    sha = await commit_all(wt, "runner-1: implementation")
    monkeypatch.delenv("GIT_DIR")  # the test's own git must see the repository

    assert sha and git(wt.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "speed-run <speed-run@localhost>|speed-run <speed-run@localhost>"
    )
    seen = [p.read_text() for p in dumps.iterdir()]
    assert len(seen) > 5
    for env_text in seen:
        names = {line.split("=", 1)[0] for line in env_text.splitlines() if "=" in line}
        assert not names & {*secrets, "GIT_DIR"}
        assert not any(value in env_text for value in secrets.values())
        assert "GIT_TERMINAL_PROMPT=0" in env_text.splitlines()


async def test_commit_all_and_changed_files_see_the_runners_work_but_not_speedruns_own_folder(
    repo: Path, home: Path
) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    _, base, _, (wt,) = await make(repo, home, ["runner-1"])
    path = Path(wt.path)
    assert await commit_all(wt, "nothing yet") is None  # the copied .env is ignored: nothing to commit

    (path / "pkg").mkdir()
    (path / "pkg" / "new.py").write_text("def f():\n    return 1\n")
    (path / "base.py").write_text("VALUE = 10\n")
    (path / ".speedrun" / "backups").mkdir(parents=True)
    (path / ".speedrun" / "backups" / "base.py").write_text("VALUE = 1\n")
    assert await changed_files(wt, base) == ["base.py", "pkg/new.py"]
    sha = await commit_all(wt, "runner-1: work")
    assert sha == git(path, "rev-parse", "HEAD")
    assert sorted(git(path, "show", "--name-only", "--format=", sha).split()) == ["base.py", "pkg/new.py"]
    assert await changed_files(wt, base) == ["base.py", "pkg/new.py"]
    assert git(repo, "rev-parse", "work") == base  # the caller's branch did not move


# --------------------------------------------------------------------------------------------------
# journal and clean

CRASH = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from speedrun.worktrees import Journal, base_commit, create_worktree, inspect_repo, plan_worktrees

    async def main():
        state = await inspect_repo(sys.argv[1])
        base = await base_commit(state, False)
        first, second = plan_worktrees(state, "feat", ["runner-1", "runner-2"])
        journal = Journal.for_run(Path(sys.argv[2]), sys.argv[3])
        await create_worktree(state, first, base, journal)
        journal.record(state.root, second)  # what create_worktree does first, then the process dies
        if sys.argv[4] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        print("ready", flush=True)
        sys.stdin.read()

    asyncio.run(main())
    """
)


def start_owner(repo: Path, home: Path, run_id: str, how: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CRASH, str(repo), str(home), run_id, how],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_crash_after_journaling_leaves_nothing_clean_cannot_find(repo: Path, home: Path) -> None:
    proc = start_owner(repo, home, "run-crashed", "kill")
    assert proc.wait(timeout=60) == -9
    journal = Journal.for_run(home, "run-crashed")
    assert [(e.name, e.state) for e in journal.entries()] == [("runner-1", "created"), ("runner-2", "planned")]
    assert len(worktree_paths(repo)) == 2 and "feat/speed-run/runner-1" in branches(repo)

    lines = await clean_orphans(home)

    assert lines == [
        f"run run-crashed: removed worktree {repo / '.worktrees' / f'speed-run-{n}'} and branch feat/speed-run/{n}"
        for n in ("runner-1", "runner-2")
    ]
    assert worktree_paths(repo) == [str(repo)]
    assert branches(repo) == ["main", "work"]
    assert not (repo / ".worktrees" / "speed-run-runner-1").exists()
    assert {e.state for e in Journal.for_run(home, "run-crashed").entries()} == {"removed"}
    assert await clean_orphans(home) == []


async def test_clean_leaves_runs_of_live_owners_and_live_run_ids_alone(repo: Path, home: Path) -> None:
    proc = start_owner(repo, home, "run-alive", "wait")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        _, _, mine, _ = await make(repo, home, ["mine-1"], run_id="run-mine", feature="other")

        assert await clean_orphans(home, live_run_ids={"run-mine"}) == []
        assert "feat/speed-run/runner-1" in branches(repo) and "other/speed-run/mine-1" in branches(repo)
    finally:
        proc.kill()
        proc.wait(timeout=30)

    lines = await clean_orphans(home, live_run_ids={"run-mine"})
    assert len(lines) == 2 and all(line.startswith("run run-alive: removed") for line in lines)
    assert branches(repo) == ["main", "other/speed-run/mine-1", "work"]
    # this process's own run, once no longer live, is an orphan like any other
    assert len(await clean_orphans(home)) == 1
    assert branches(repo) == ["main", "work"] and worktree_paths(repo) == [str(repo)]


# --------------------------------------------------------------------------------------------------
# promote


async def winner_with_work(repo: Path, home: Path, edit: str = "VALUE = 2\n"):
    state, base, journal, (wt,) = await make(repo, home, ["runner-1"])
    (Path(wt.path) / "base.py").write_text(edit)
    (Path(wt.path) / "feature.py").write_text("FEATURE = 1\n")
    sha = await commit_all(wt, "runner-1: work")
    return wt, journal, sha


async def test_promote_branch_keeps_the_branch_and_removes_the_worktree(repo: Path, home: Path) -> None:
    wt, journal, sha = await winner_with_work(repo, home)
    head = git(repo, "rev-parse", "HEAD")

    line = await promote(str(repo), wt, "branch", journal)

    assert "feat/speed-run/runner-1" in line
    assert git(repo, "rev-parse", "feat/speed-run/runner-1") == sha
    assert worktree_paths(repo) == [str(repo)] and not Path(wt.path).exists()
    assert git(repo, "rev-parse", "HEAD") == head and not (repo / "feature.py").exists()
    assert [e.state for e in journal.entries()] == ["promoted"]
    assert await clean_orphans(home) == []  # a promoted branch is the user's now
    assert "feat/speed-run/runner-1" in branches(repo)


async def test_promote_merge_merges_into_the_callers_branch_and_deletes_the_branch(repo: Path, home: Path) -> None:
    wt, journal, sha = await winner_with_work(repo, home)
    before = git(repo, "rev-parse", "HEAD")

    line = await promote(str(repo), wt, "merge", journal)

    assert line.startswith("merged feat/speed-run/runner-1 into work")
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "work"
    assert git(repo, "log", "-1", "--format=%P").split() == [before, sha]  # --no-ff: a real merge commit
    assert (repo / "feature.py").read_text() == "FEATURE = 1\n" and (repo / "base.py").read_text() == "VALUE = 2\n"
    assert "feat/speed-run/runner-1" not in branches(repo) and worktree_paths(repo) == [str(repo)]
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


async def test_a_merge_conflict_is_aborted_and_the_branch_kept(repo: Path, home: Path) -> None:
    wt, journal, sha = await winner_with_work(repo, home)
    (repo / "base.py").write_text("VALUE = 3\n")
    git(repo, "commit", "-q", "-am", "the caller moved on")
    head = git(repo, "rev-parse", "HEAD")

    with pytest.raises(SpeedRunError, match=r"merging feat/speed-run/runner-1 into work failed and was undone"):
        await promote(str(repo), wt, "merge", journal)

    assert git(repo, "rev-parse", "HEAD") == head and (repo / "base.py").read_text() == "VALUE = 3\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert git(repo, "rev-parse", "feat/speed-run/runner-1") == sha
    assert not Path(wt.path).exists()


async def test_a_merge_is_refused_on_a_dirty_tree_or_detached_head(repo: Path, home: Path) -> None:
    wt, journal, sha = await winner_with_work(repo, home)
    (repo / "work.py").write_text("WORK = 'edited, not committed'\n")
    with pytest.raises(InputError, match=r"did not merge feat/speed-run/runner-1: 1 tracked file.*branch is kept"):
        await promote(str(repo), wt, "merge", journal)
    assert (repo / "work.py").read_text() == "WORK = 'edited, not committed'\n"
    assert git(repo, "rev-parse", "feat/speed-run/runner-1") == sha and not Path(wt.path).exists()

    git(repo, "checkout", "-q", "--", "work.py")
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(InputError, match="HEAD is detached"):
        await promote(str(repo), wt, "merge", journal)
    assert git(repo, "rev-parse", "feat/speed-run/runner-1") == sha


# --------------------------------------------------------------------------------------------------
# the nodes


def runtime(home: Path, run_id: str, events: list[dict]) -> SimpleNamespace:
    settings = Settings().model_copy(update={"home": home})
    return SimpleNamespace(
        context=RunContext(settings), execution_info=SimpleNamespace(thread_id=run_id), stream_writer=events.append
    )


def judged(winner: str) -> JudgeResult:
    decision = Decision(winner=winner, ranking=[winner], gate_applied=None, rationale=f"{winner} reads best.")
    return JudgeResult(
        mode="showdown", winner=winner, decision=decision, scorecards=[], worksheet_path="w.md", scorecard_path="s"
    )


async def test_prepare_then_promote_nodes_leave_only_the_winners_branch(repo: Path, home: Path) -> None:
    events: list[dict] = []
    rt = runtime(home, "run-nodes", events)
    state = ShowdownState(design="d", feature="feat", repo=str(repo), runners=3, count=3)

    out = await prepare_worktrees(state, rt)

    assert [wt.name for wt in out["worktrees"]] == ["runner-1", "runner-2", "runner-3"]
    assert out["repo_root"] == str(repo) and out["base"] == git(repo, "rev-parse", "work")
    assert len(worktree_paths(repo)) == 4
    (Path(out["worktrees"][2].path) / "won.py").write_text("WON = 1\n")
    await commit_all(out["worktrees"][2], "runner-3")

    done = state.model_copy(update={**out, "survivors": ["runner-1", "runner-3"], "judged": judged("runner-3")})
    result = await promote_node(done, rt)

    assert result["warnings"] == []
    assert result["result"].status == "promoted" and result["result"].winner_branch == "feat/speed-run/runner-3"
    assert result["result"].why == "runner-3 reads best."
    assert result["result"].promotion == (
        "kept branch feat/speed-run/runner-3; merge it with `git merge feat/speed-run/runner-3`"
    )
    assert branches(repo) == ["feat/speed-run/runner-3", "main", "work"]
    assert worktree_paths(repo) == [str(repo)]
    again = await promote_node(done, rt)  # a resumed promote finds its work done
    assert again["warnings"] == []
    assert again["result"].promotion == "feat/speed-run/runner-3: handed over before the run was interrupted (branch)"
    assert branches(repo) == ["feat/speed-run/runner-3", "main", "work"]
    assert await clean_orphans(home) == []


async def test_a_merge_promote_resumed_after_its_worktree_went_still_merges(repo: Path, home: Path) -> None:
    # The process died inside promote: the winner's worktree was removed (journal: promoted), the merge not run yet.
    rt = runtime(home, "run-merge", [])
    state = ShowdownState(design="d", feature="feat", repo=str(repo), runners=2, count=2, promote="merge")
    out = await prepare_worktrees(state, rt)
    winner = out["worktrees"][1]
    (Path(winner.path) / "won.py").write_text("WON = 1\n")
    await commit_all(winner, "runner-2")
    journal = Journal.for_run(home, "run-merge")
    await remove_worktree(str(repo), winner, journal, keep_branch=True)
    done = state.model_copy(update={**out, "survivors": ["runner-1", "runner-2"], "judged": judged("runner-2")})

    result = await promote_node(done, rt)

    assert result["warnings"] == [] and result["result"].status == "promoted"
    assert result["result"].promotion.startswith("merged feat/speed-run/runner-2 into work")
    assert (repo / "won.py").read_text() == "WON = 1\n"
    assert branches(repo) == ["main", "work"] and worktree_paths(repo) == [str(repo)]
    assert await clean_orphans(home) == []


async def test_a_refused_merge_says_so_in_the_promotion_line_and_keeps_the_branch(repo: Path, home: Path) -> None:
    rt = runtime(home, "run-dirty", [])
    state = ShowdownState(design="d", feature="feat", repo=str(repo), runners=2, count=2, promote="merge")
    out = await prepare_worktrees(state, rt)
    (repo / "work.py").write_text("WORK = 'edited, not committed'\n")
    done = state.model_copy(update={**out, "survivors": ["runner-1"]})

    result = await promote_node(done, rt)

    line = result["result"].promotion
    assert line.startswith("not promoted: did not merge feat/speed-run/runner-1: 1 tracked file") and len(line) <= 300
    assert result["warnings"] == [line]
    assert branches(repo) == ["feat/speed-run/runner-1", "main", "work"] and worktree_paths(repo) == [str(repo)]


async def test_promote_ask_keeps_only_survivor_branches_and_a_failed_prepare_rolls_back(repo: Path, home: Path) -> None:
    events: list[dict] = []
    state = AnyPercentState(
        design="d",
        feature="cache",
        repo=str(repo),
        promote="ask",
        approaches=[Approach(slug=s, summary=s) for s in ("sqlite", "in-memory", "redis")],
    )
    out = await prepare_worktrees(state, runtime(home, "run-ask", events))
    assert [wt.branch for wt in out["worktrees"]] == [
        "cache/speed-run/variant-sqlite",
        "cache/speed-run/variant-in-memory",
        "cache/speed-run/variant-redis",
    ]
    done = state.model_copy(update={**out, "survivors": ["variant-sqlite", "variant-redis"]})
    result = await promote_node(
        done.model_copy(update={"judged": judged("variant-redis")}), runtime(home, "run-ask", [])
    )
    assert result["result"].status == "awaiting_choice" and result["result"].winner == "variant-redis"
    assert branches(repo) == ["cache/speed-run/variant-redis", "cache/speed-run/variant-sqlite", "main", "work"]
    assert worktree_paths(repo) == [str(repo)]

    # A git failure at the third worktree (its ref is locked) undoes the first two, then the error is raised.
    lock = repo / ".git" / "refs" / "heads" / "feat" / "speed-run" / "runner-3.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    showdown = ShowdownState(design="d", feature="feat", repo=str(repo), runners=3, count=3)
    with pytest.raises(SpeedRunError, match="runner-3"):
        await prepare_worktrees(showdown, runtime(home, "run-fails", events))
    assert worktree_paths(repo) == [str(repo)]
    assert not [b for b in branches(repo) if b.startswith("feat/")]
    assert {e.state for e in Journal.for_run(home, "run-fails").entries()} == {"removed"}
