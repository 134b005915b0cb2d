"""Logs/state.toml: what an operator switched at runtime (pauses, theme), kept across restarts."""

from __future__ import annotations

import fcntl
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchkeeper.core import logsdir
from watchkeeper.core.logsdir import LogsAccessError

STATE_NAME = "state.toml"


@dataclass
class RuntimeState:
    """What the operator switched: everything paused, jobs paused, the console's theme."""

    paused: bool = False
    paused_jobs: set[str] = field(default_factory=set)
    theme: str | None = None

    def is_paused(self, job: str) -> bool:
        return self.paused or job in self.paused_jobs


def state_path(vault: Path) -> Path:
    return vault / "Logs" / STATE_NAME


def load_state(vault: Path) -> RuntimeState:
    """A missing or unreadable state file means nothing was switched: defaults."""
    try:
        data = tomllib.loads(state_path(vault).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return RuntimeState()
    return state_from(data)


def state_from(data: dict[str, Any]) -> RuntimeState:
    """The switches a stored table holds (state.toml, or a cluster's watchkeeper.state);
    values of the wrong type count as not switched."""
    jobs = data.get("paused_jobs", [])
    theme = data.get("theme")
    return RuntimeState(
        paused=data.get("paused") is True,
        paused_jobs={job for job in jobs if isinstance(job, str)}
        if isinstance(jobs, list)
        else set(),
        theme=theme if isinstance(theme, str) else None,
    )


def save_state(vault: Path, state: RuntimeState) -> None:
    """Atomic: a crash mid-write leaves the previous state, never half a file.
    LogsAccessError when it cannot be written."""
    data: dict[str, Any] = {"paused": state.paused, "paused_jobs": sorted(state.paused_jobs)}
    if state.theme:
        data["theme"] = state.theme
    path = state_path(vault)
    import tomli_w  # only to write: readers (--status, jobs) start without it

    try:
        logsdir.write_file(path, tomli_w.dumps(data))
    except OSError as error:
        raise LogsAccessError("write", path, error) from None


def update_state(vault: Path, change: Callable[[RuntimeState], None]) -> RuntimeState:
    """Read, change and save the state file under a lock: the keeper (pauses) and a
    console (theme) both write it, and neither may undo what the other just saved."""
    path = state_path(vault)
    try:
        fd = logsdir.open_file(path.with_name(".state.lock"), os.O_RDWR)
    except OSError as error:
        raise LogsAccessError("write", path, error) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = load_state(vault)
        change(state)
        save_state(vault, state)
        return state
    finally:
        os.close(fd)  # closing releases the flock
