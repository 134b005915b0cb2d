"""`isolate = "worktree"`: a run's own git worktree, made before it starts and settled
after it ends. Blocking git calls, made off the keeper's loop (core/isolation.py).

Worktrees live in the repository's git directory, `<git dir>/watchkeeper-worktrees/
<job>/<run id>`: out of `git status` of the checkout, out of the vault's file watches
(hidden directories are skipped), beside the metadata git keeps for them, and on the
repository's file system, so a checkout is as cheap as git can make it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.core.config import JobConfig
from watchkeeper.core.config_isolate import repo_dir

WORKTREES = "watchkeeper-worktrees"
# Past this a git call is stuck (a lock held by another process, a hung file system).
GIT_TIMEOUT = 120.0
# Runs of one repository take turns at git: two `worktree add` at once race for its locks.
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()
# The keeper's own GIT_* variables would point git at another repository.
_GIT_ENV = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}


class WorktreeError(Exception):
    """A git step of a worktree failed; the message says which and why."""


def branch_name(job: str, run_id: str) -> str:
    return f"watchkeeper/{job}/{run_id}"


@dataclass(frozen=True)
class Worktree:
    repo: Path
    path: Path
    branch: str
    base_ref: str  # what the job named (or HEAD)
    base_commit: str


def _lock(repo: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(repo, threading.Lock())


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            env=_GIT_ENV,
            timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise WorktreeError("git is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise WorktreeError(f"git {args[0]} took over {GIT_TIMEOUT:g}s") from None
    if check and done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise WorktreeError(f"git {args[0]}: {reason[-1] if reason else 'failed'}")
    return done


def worktree_path(repo: Path, job: str, run_id: str) -> Path:
    common = git(repo, "rev-parse", "--git-common-dir").stdout.strip()
    return (repo / common).resolve() / WORKTREES / job / run_id


def create(job: JobConfig, vault: Path, run_id: str) -> Worktree:
    """A fresh worktree on a new branch from the job's base. Raises WorktreeError."""
    assert job.repo is not None
    repo = repo_dir(job.repo, vault)
    base = job.base or "HEAD"
    with _lock(repo):
        found = git(
            repo,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            base + "^{commit}",
            check=False,
        )
        if found.returncode != 0:
            raise WorktreeError(f"base {base!r} is not a commit in {repo}")
        commit = found.stdout.strip()
        path = worktree_path(repo, job.name, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        branch = branch_name(job.name, run_id)
        git(repo, "worktree", "add", "--quiet", "-b", branch, str(path), commit)
    return Worktree(repo, path, branch, base, commit)


def settle(tree: Worktree, job: JobConfig, status: str) -> list[str]:
    """After the run: its worktree removed; its branch kept on success (fast-forwarded
    into base with merge = "ff"), removed on any other end unless keep_failed. Returns
    what happened, in words for the job log."""
    with _lock(tree.repo):
        if status != "success":
            if job.keep_failed:
                return [f"kept worktree {tree.path} on branch {tree.branch} ({status})"]
            _remove(tree.repo, tree.path, tree.branch)
            return [f"removed worktree and branch {tree.branch} ({status})"]
        _remove(tree.repo, tree.path, None)
        lines = [f"branch {tree.branch} kept"]
        if job.merge == "ff":
            lines = _fast_forward(tree)
        return lines


def _remove(repo: Path, path: Path, branch: str | None) -> None:
    if path.exists():
        git(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
    git(repo, "worktree", "prune", check=False)
    if branch is not None:
        git(repo, "branch", "-D", "--quiet", branch, check=False)


def _fast_forward(tree: Worktree) -> list[str]:
    """Base moved to the run's branch when that only adds commits; else the branch stays
    and the reason is told."""
    repo, branch = tree.repo, tree.branch
    target = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").stdout.strip()
    ref = _base_branch(repo, tree.base_ref)
    if ref is None:
        return [
            f"cannot fast-forward: base {tree.base_ref!r} is not a branch; branch {branch} kept"
        ]
    short = ref.removeprefix("refs/heads/")
    if target == tree.base_commit:
        git(repo, "branch", "-D", "--quiet", branch, check=False)
        return [f"no new commits; {short} unchanged, branch {branch} removed"]
    old = git(repo, "rev-parse", "--verify", "--quiet", ref).stdout.strip()
    ancestor = git(repo, "merge-base", "--is-ancestor", old, target, check=False)
    if ancestor.returncode != 0:
        return [
            f"cannot fast-forward {short}: it moved since the run began "
            f"(now {old[:12]}); branch {branch} kept"
        ]
    checkout = _checked_out(repo, ref)
    if checkout is not None:
        # The branch is some checkout's: merge there, so its files follow the ref.
        done = git(checkout, "merge", "--ff-only", "--quiet", target, check=False)
    else:
        done = git(repo, "update-ref", ref, target, old, check=False)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        why = reason[-1] if reason else "git refused"
        return [f"cannot fast-forward {short}: {why}; branch {branch} kept"]
    git(repo, "branch", "-D", "--quiet", branch, check=False)
    return [f"fast-forwarded {short} to {target[:12]}; branch {branch} removed"]


def _base_branch(repo: Path, base: str) -> str | None:
    """The full ref of the branch `base` names (HEAD: the branch checked out)."""
    if base == "HEAD":
        found = git(repo, "symbolic-ref", "--quiet", "HEAD", check=False)
    else:
        found = git(
            repo,
            "rev-parse",
            "--verify",
            "--quiet",
            "--symbolic-full-name",
            "--end-of-options",
            base,
            check=False,
        )
    ref = found.stdout.strip()
    return ref if found.returncode == 0 and ref.startswith("refs/heads/") else None


def _checked_out(repo: Path, ref: str) -> Path | None:
    listing = git(repo, "worktree", "list", "--porcelain").stdout
    path: Path | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch {ref}":
            return path
    return None


def prune_interrupted(job: JobConfig, vault: Path, run_id: str) -> str:
    """At start: the worktree of a run a dead keeper left (interrupted), removed unless
    keep_failed; with its branch. Returns what happened, in words."""
    assert job.repo is not None
    repo = repo_dir(job.repo, vault)
    branch = branch_name(job.name, run_id)
    with _lock(repo):
        path = worktree_path(repo, job.name, run_id)
        if job.keep_failed:
            return f"kept worktree {path} on branch {branch} (interrupted)"
        _remove(repo, path, branch)
    return f"removed worktree and branch {branch} (interrupted)"


def isolation_rows(job: JobConfig) -> list[tuple[str, str]]:
    """How a job is isolated, for `describe` and the console's job screen."""
    rows = [("isolate", f"worktree of {job.repo} from {job.base or 'HEAD'}")]
    if job.merge:
        rows.append(("merge", f"{job.merge} (fast-forward the base on success)"))
    rows.append(("keep_failed", "yes" if job.keep_failed else "no"))
    return rows
