"""The keys of `isolate = "worktree"` checked together: the repository must be there and
be one, and the keys that only mean something with isolation need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Keys that only a job with `isolate` reads.
ISOLATE_KEYS = ("repo", "base", "keep_failed", "merge")


def repo_dir(repo: str, vault: Path) -> Path:
    """`repo` as the job names it: absolute, or relative to the vault."""
    path = Path(repo).expanduser()
    return path if path.is_absolute() else vault / path


def is_git_repo(path: Path) -> bool:
    """A working tree's top: a .git directory holding HEAD, or a .git file pointing to
    one (a linked worktree or a submodule). Read from the disk, no git process: a config
    is checked on every reload."""
    dot_git = path / ".git"
    try:
        if dot_git.is_dir():
            return (dot_git / "HEAD").is_file()
        if dot_git.is_file():
            return dot_git.read_text("utf-8", "replace").startswith("gitdir:")
    except OSError:
        return False
    return False


def isolation_problems(job: str, fields: dict[str, Any], vault: Path) -> list[tuple[str, str]]:
    """(key, message) for each problem of a job's isolation keys."""
    if fields.get("isolate") is None:
        return [
            (key, f'{key!r} needs isolate = "worktree"') for key in ISOLATE_KEYS if key in fields
        ]
    problems: list[tuple[str, str]] = []
    if ".." in job or job.endswith((".", ".lock")):
        # Its runs' branches are watchkeeper/<job>/<run id>, and git refuses such a name.
        problems.append(("isolate", f"job name {job!r} cannot name a git branch"))
    repo = fields.get("repo")
    if repo is None:
        problems.append(("repo", 'isolate = "worktree" needs repo = "path/to/a/git/repository"'))
    else:
        path = repo_dir(repo, vault)
        if not path.is_dir():
            problems.append(("repo", f"{repo!r}: no such directory ({path})"))
        elif not is_git_repo(path):
            problems.append(("repo", f"{repo!r} is not the top of a git working tree ({path})"))
    if "http" in fields:
        problems.append(("isolate", "an http job starts no process: there is nothing to isolate"))
    if "cwd" in fields:
        problems.append(("cwd", 'a run with isolate = "worktree" works in its worktree'))
    runs_on = fields.get("runs_on")
    if runs_on is not None and runs_on != ("keeper",):
        problems.append(("runs_on", 'worktrees are made on the keeper\'s host: runs_on = "keeper"'))
    return problems
