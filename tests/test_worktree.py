"""isolate = "worktree": each run in its own git worktree of a real repository, settled
after it ends (kept, removed, fast-forwarded) and cleaned after a kill -9 of the keeper."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import (
    final_records,
    finish,
    history_lines,
    keeper_log,
    run_cli,
    started_keeper,
    until,
    wait_for,
)

from watchkeeper.core.worktree import WORKTREES

IDENTITY = "-c user.name=keeper -c user.email=keeper@example.invalid"
# A run's work: a file committed on its branch, and where it ran noted in the vault.
COMMIT = (
    'pwd > "$WATCHKEEPER_VAULT/$WATCHKEEPER_RUN_ID.cwd" && echo work > work.txt && '
    f"git add work.txt && git {IDENTITY} commit -qm work"
)


def git(repo: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def has_branch(repo: Path, branch: str) -> bool:
    return bool(git(repo, "branch", "--list", branch))


def worktrees(repo: Path) -> list[str]:
    listing = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("start\n")
    git(path, "add", "README")
    git(path, *IDENTITY.split(), "commit", "-qm", "start")
    return path


def job(command: str, repo: Path, extra: str = "") -> str:
    return f"""
        [jobs.build]
        command = {command!r}
        isolate = "worktree"
        repo = "{repo}"
        {extra}
        """


async def one_run(vault: Path) -> dict:
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("build")
    assert await keeper.wait_idle(30)
    await finish(keeper)
    return final_records(vault)[run_id]


def ran_in(vault: Path, run_id: str) -> Path:
    return Path((vault / f"{run_id}.cwd").read_text().strip())


async def test_a_successful_run_works_in_its_own_worktree_and_its_branch_stays(
    make_vault, repo: Path
) -> None:
    vault = make_vault(job(COMMIT, repo))
    start = git(repo, "rev-parse", "main")
    record = await one_run(vault)
    run_id = record["id"]
    branch = f"watchkeeper/build/{run_id}"
    assert (record["status"], record["worktreeBranch"]) == ("success", branch)
    running = [line for line in history_lines(vault) if line["status"] == "running"]
    assert running[0]["worktreeBranch"] == branch  # a restart after a kill finds it
    assert ran_in(vault, run_id) == repo / ".git" / WORKTREES / "build" / run_id
    assert git(repo, "show", f"{branch}:work.txt") == "work"
    assert git(repo, "rev-parse", f"{branch}~1") == start
    assert git(repo, "rev-parse", "main") == start  # no merge asked: base untouched
    assert worktrees(repo) == [str(repo)]  # the checkout goes, the branch stays
    assert not (repo / "work.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    log = (vault / "Logs" / "jobs" / "build.log").read_text()
    assert f"⎇ worktree: branch {branch} kept" in log


async def test_a_failed_run_loses_its_worktree_and_branch(make_vault, repo: Path) -> None:
    vault = make_vault(job(COMMIT + " && exit 3", repo))
    record = await one_run(vault)
    branch = f"watchkeeper/build/{record['id']}"
    assert (record["status"], record["exitCode"], record["worktreeBranch"]) == (
        "failure",
        3,
        branch,
    )
    assert not has_branch(repo, branch)
    assert worktrees(repo) == [str(repo)]
    assert not ran_in(vault, record["id"]).exists()
    log = (vault / "Logs" / "jobs" / "build.log").read_text()
    assert f"removed worktree and branch {branch} (failure)" in log


async def test_keep_failed_keeps_the_worktree_and_branch_of_a_failed_run(
    make_vault, repo: Path
) -> None:
    vault = make_vault(
        job(COMMIT + " && echo half > half.txt && exit 1", repo, "keep_failed = true")
    )
    record = await one_run(vault)
    branch = f"watchkeeper/build/{record['id']}"
    where = ran_in(vault, record["id"])
    assert record["status"] == "failure"
    assert has_branch(repo, branch)
    assert str(where) in worktrees(repo)
    assert (where / "half.txt").read_text() == "half\n"  # left as the run left it
    assert git(repo, "show", f"{branch}:work.txt") == "work"


async def test_a_cancelled_run_loses_its_worktree_and_branch(make_vault, repo: Path) -> None:
    vault = make_vault(
        job('pwd > "$WATCHKEEPER_VAULT/$WATCHKEEPER_RUN_ID.cwd"; exec sleep 60', repo)
    )
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("build")
    await until(lambda: (vault / f"{run_id}.cwd").exists())
    assert keeper.cancel(run_id)
    assert await keeper.wait_idle(30)
    await finish(keeper)
    assert final_records(vault)[run_id]["status"] == "cancelled"
    assert not has_branch(repo, f"watchkeeper/build/{run_id}")
    assert worktrees(repo) == [str(repo)]


async def test_merge_ff_fast_forwards_the_base_checkout_and_drops_the_branch(
    make_vault, repo: Path
) -> None:
    vault = make_vault(job(COMMIT, repo, 'merge = "ff"'))
    record = await one_run(vault)
    branch = f"watchkeeper/build/{record['id']}"
    assert record["status"] == "success"
    assert git(repo, "log", "-1", "--format=%s", "main") == "work"
    assert (repo / "work.txt").read_text() == "work\n"  # the checkout of main followed
    assert git(repo, "status", "--porcelain") == ""
    assert not has_branch(repo, branch)
    log = (vault / "Logs" / "jobs" / "build.log").read_text()
    assert "fast-forwarded main to" in log


async def test_merge_ff_says_so_and_keeps_the_branch_when_the_base_moved(
    make_vault, repo: Path
) -> None:
    moved = f'git -C "{repo}" {IDENTITY} commit -q --allow-empty -m moved'
    vault = make_vault(job(f"{COMMIT} && {moved}", repo, 'merge = "ff"'))
    record = await one_run(vault)
    branch = f"watchkeeper/build/{record['id']}"
    assert record["status"] == "success"
    assert git(repo, "log", "-1", "--format=%s", "main") == "moved"
    assert has_branch(repo, branch)
    assert git(repo, "show", f"{branch}:work.txt") == "work"
    log = (vault / "Logs" / "jobs" / "build.log").read_text()
    assert "cannot fast-forward main: it moved since the run began" in log
    assert f"branch {branch} kept" in log


async def test_concurrent_runs_of_one_job_get_a_worktree_each(make_vault, repo: Path) -> None:
    # Each run waits until both have started: they are in flight together.
    both = (
        'pwd > "$WATCHKEEPER_VAULT/$WATCHKEEPER_RUN_ID.cwd"; n=0; '
        'while [ "$(ls "$WATCHKEEPER_VAULT" | grep -c cwd)" -lt 2 ] && [ $n -lt 1500 ]; '
        "do sleep 0.02; n=$((n+1)); done; "
        f"echo $WATCHKEEPER_RUN_ID > run.txt && git add run.txt && git {IDENTITY} commit -qm run"
    )
    vault = make_vault(job(both, repo, 'overlap = "allow"'))
    keeper = await started_keeper(vault)
    first, second = keeper.run_now("build"), keeper.run_now("build")
    assert await keeper.wait_idle(60)
    await finish(keeper)
    records = final_records(vault)
    assert [records[run]["status"] for run in (first, second)] == ["success", "success"]
    assert ran_in(vault, first) != ran_in(vault, second)
    for run in (first, second):
        assert git(repo, "show", f"watchkeeper/build/{run}:run.txt") == run


async def test_a_base_that_is_no_commit_fails_the_run_before_it_starts(
    make_vault, repo: Path
) -> None:
    vault = make_vault(job(COMMIT, repo, 'base = "no-such-branch"'))
    record = await one_run(vault)
    assert (record["status"], record["exitCode"], record["worktreeBranch"]) == (
        "failure",
        126,
        None,
    )
    assert "cannot make its worktree: base 'no-such-branch' is not a commit" in record["error"]
    assert git(repo, "branch", "--list", "watchkeeper/*") == ""


def test_a_worktree_left_by_a_keeper_killed_mid_run_is_removed_at_start(
    make_vault, repo: Path, daemon
) -> None:
    command = 'touch "$WATCHKEEPER_VAULT/$WATCHKEEPER_RUN_ID.started"; exec sleep 60'
    vault = make_vault(job(command, repo))
    keeper = daemon(vault)
    assert run_cli("run", "build", "--vault", str(vault)).returncode == 0
    started = wait_for(lambda: list(vault.glob("*.started")))
    assert isinstance(started, list)
    run_id = started[0].name.removesuffix(".started")
    branch = f"watchkeeper/build/{run_id}"
    where = repo / ".git" / WORKTREES / "build" / run_id
    assert where.is_dir() and has_branch(repo, branch)
    keeper.send_signal(signal.SIGKILL)
    keeper.wait()
    again = daemon(vault)
    wait_for(lambda: "removed worktree and branch" in keeper_log(vault))
    record = final_records(vault)[run_id]
    assert (record["status"], record["worktreeBranch"]) == ("interrupted", branch)
    assert not where.exists()
    assert not has_branch(repo, branch)
    assert worktrees(repo) == [str(repo)]
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("lines", "key", "message"),
    [
        (
            'isolate = "worktree"\nrepo = "nowhere"',
            "jobs.build.repo",
            "'nowhere': no such directory",
        ),
        ('isolate = "worktree"\nrepo = "plain"', "jobs.build.repo", "is not the top of a git"),
        ('isolate = "worktree"', "jobs.build.repo", 'needs repo = "path/to/a/git/repository"'),
        ('repo = "plain"', "jobs.build.repo", "'repo' needs isolate = \"worktree\""),
        ('isolate = "copy"', "jobs.build.isolate", "expected one of 'worktree'"),
        ('isolate = "worktree"\nrepo = "code"\nmerge = "rebase"', "jobs.build.merge", "'ff'"),
        ('isolate = "worktree"\nrepo = "code"\nbase = "-x"', "jobs.build.base", "expected a git"),
        ('isolate = "worktree"\nrepo = "code"\ncwd = "plain"', "jobs.build.cwd", "its worktree"),
        (
            'isolate = "worktree"\nrepo = "code"\nhttp = { url = "http://127.0.0.1:9/" }',
            "jobs.build.isolate",
            "nothing to isolate",
        ),
    ],
)
def test_validate_refuses_an_isolation_it_cannot_make(
    make_vault, repo: Path, lines: str, key: str, message: str
) -> None:
    vault = make_vault(f'[jobs.build]\ncommand = "true"\n{lines}\n')
    (vault / "plain").mkdir()
    (vault / "code").symlink_to(repo)
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 2, done.stdout
    assert f": {key}: " in done.stderr and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_validate_accepts_a_repository_relative_to_the_vault(make_vault, repo: Path) -> None:
    vault = make_vault('[jobs.build]\ncommand = "true"\nisolate = "worktree"\nrepo = "code"\n')
    (vault / "code").symlink_to(repo)
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 0, done.stderr


async def test_a_run_past_its_timeout_loses_its_worktree_and_branch(make_vault, repo: Path) -> None:
    vault = make_vault(job(f"{COMMIT} && exec sleep 60", repo, 'timeout = "300ms"'))
    record = await one_run(vault)
    assert record["status"] == "timeout"
    assert not has_branch(repo, record["worktreeBranch"])
    assert worktrees(repo) == [str(repo)]


def test_validate_refuses_isolating_a_job_whose_name_git_cannot_branch(
    make_vault, repo: Path
) -> None:
    vault = make_vault(
        f'[jobs."x.lock"]\ncommand = "true"\nisolate = "worktree"\nrepo = "{repo}"\n'
    )
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 2
    assert "jobs.\"x.lock\".isolate: job name 'x.lock' cannot name a git branch" in done.stderr
