"""Logs/ is private to the keeper's user (folders 0700, files 0600) unless [keeper]
log_mode lets a group in; the modes never depend on the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import finals, finish, run_cli, started_keeper, until

from watchkeeper.core import logsdir
from watchkeeper.core.atomic import write_atomic
from watchkeeper.core.state import RuntimeState, save_state, update_state

JOB = """
[jobs.tick]
command = ["sh", "-c", "echo tick"]
every = "1s"
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(logs: Path) -> Iterator[Path]:
    yield logs
    for folder, folders, files in os.walk(logs):
        for name in folders + files:
            yield Path(folder) / name


@pytest.fixture
def umask() -> Iterator[None]:
    """A umask that would give away everything, were it trusted."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def open_up(vault: Path) -> None:
    """Logs/ as an older keeper left it: 0755 folders, 0644 files."""
    logs = vault / "Logs"
    for name in ("history", "jobs"):
        (logs / name).mkdir(parents=True, exist_ok=True)
    (logs / "history" / "2025-03-14.jsonl").write_text("")
    (logs / "jobs" / "tick.log").write_text("old output\n")
    (logs / "files.jsonl").write_text("")
    (logs / "metrics.prom").write_text("")
    for path in tree(logs):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


async def run_a_while(vault: Path) -> None:
    keeper = await started_keeper(vault)
    task = asyncio.create_task(keeper.serve())
    await until(lambda: len(finals(vault, "tick")) >= 1)
    keeper.pause("tick")  # writes state.toml
    await until(lambda: (vault / "Logs" / "metrics.prom").stat().st_size > 0)
    await finish(keeper, task)


@pytest.mark.usefixtures("umask")
async def test_logs_are_private_and_wider_modes_are_tightened_at_start(make_vault) -> None:
    vault = make_vault(JOB)
    open_up(vault)
    await run_a_while(vault)

    logs = vault / "Logs"
    expected = {
        "Logs",
        "Logs/history",
        "Logs/jobs",
        "Logs/jobs/tick.log",
        "Logs/watchkeeper.log",
        "Logs/files.jsonl",
        "Logs/metrics.prom",
        "Logs/state.toml",
        "Logs/.watchkeeper.lock",
    }
    seen = {str(path.relative_to(vault)): mode(path) for path in tree(logs)}
    assert expected <= set(seen)
    assert any(name.startswith("Logs/history/20") for name in seen)
    wrong = {
        name: oct(got)
        for name, got in seen.items()
        if got != (0o700 if (vault / name).is_dir() else 0o600)
    }
    assert wrong == {}
    # Dashboard.md is a note among the user's notes: what the umask gives any new file.
    assert mode(vault / "Dashboard.md") == 0o666


async def test_log_mode_lets_a_group_read(make_vault) -> None:
    vault = make_vault('[keeper]\nlog_mode = "0750"\n' + JOB)
    open_up(vault)
    os.chmod(vault / "Logs" / "files.jsonl", 0o600)  # narrower than asked: set as well
    await run_a_while(vault)

    for path in tree(vault / "Logs"):
        assert mode(path) == (0o750 if path.is_dir() else 0o640), path


def test_files_take_their_folders_mode_whatever_the_umask(tmp_path: Path, umask) -> None:
    logs = tmp_path / "Logs"
    save_state(tmp_path, RuntimeState(paused=True))  # makes Logs/, private
    assert mode(logs) == 0o700
    assert mode(logs / "state.toml") == 0o600
    os.umask(0o077)
    os.chmod(logs, 0o770)
    update_state(tmp_path, lambda state: setattr(state, "theme", "dark"))
    assert mode(logs / "state.toml") == 0o660 and mode(logs / ".state.lock") == 0o660
    fd = logsdir.open_file(logs / "new" / "deep.log", os.O_WRONLY)  # folders made private
    os.close(fd)
    assert (mode(logs / "new"), mode(logs / "new" / "deep.log")) == (0o700, 0o600)


def test_atomic_writes_get_exactly_the_mode_asked(tmp_path: Path) -> None:
    before = os.umask(0o277)  # would leave even the owner unable to write
    try:
        write_atomic(tmp_path / "a.txt", "one", 0o640)
        assert mode(tmp_path / "a.txt") == 0o640
        write_atomic(tmp_path / "b.txt", "two")  # no mode: what the umask gives
        assert mode(tmp_path / "b.txt") == 0o400
    finally:
        os.umask(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temp left


def test_init_then_pause_without_a_keeper_leave_logs_private(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    assert run_cli("pause", "--vault", str(vault)).returncode == 0
    assert mode(vault / "Logs" / "state.toml") == 0o600
