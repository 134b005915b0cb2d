"""Shared test helpers: real vaults in tmp dirs, the real CLI, waiting on conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from http_server import endpoint  # noqa: F401  (the http jobs' test server, a fixture)
from pgserver import pg_dsn, pg_server  # noqa: F401  (fixtures for the cluster tests)

from watchkeeper.core.history import HistoryWriter, RunRecord, utc_now
from watchkeeper.core.vault import ensure_layout

if TYPE_CHECKING:
    import asyncio

    from watchkeeper.core.keeper import Keeper

CLI = Path(sys.executable).parent / "watchkeeper"


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts `pytest &` (a script, a CI step in the
    # background) with SIGINT ignored, and every child inherits that: the tests that press
    # Ctrl-C on a follow (`logs -f`) would wait forever for it to end. A terminal's Ctrl-C
    # is what they simulate, so the suite takes SIGINT back for itself and its children.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Deadlines are what a busy 2-core box (the suite under xdist beside a benchmark) needs,
# not what a quiet one does: they cost time only when a test is failing anyway.
PATIENCE = 30.0


def wait_for(
    condition: Callable[[], object], timeout: float = PATIENCE, interval: float = 0.02
) -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


async def pilot_until(
    pilot: Any, condition: Callable[[], object], timeout: float = PATIENCE
) -> None:
    """wait_for for a Textual Pilot: let the app run between checks."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout}s: {condition}")
        await pilot.pause(0.02)


def pid_alive(pid: int) -> bool:
    """Running or sleeping; a zombie has finished and only waits to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def history_lines(vault: Path) -> list[dict]:
    lines = []
    for segment in sorted((vault / "Logs" / "history").glob("*.jsonl")):
        # A line the keeper is appending right now is not whole yet: read up to the last newline.
        whole = segment.read_text().rpartition("\n")[0]
        for raw in whole.split("\n"):
            if raw.strip():
                lines.append(json.loads(raw))
    return lines


def final_records(vault: Path) -> dict[str, dict]:
    """Folded by id, last line wins, as DESIGN says readers do."""
    folded: dict[str, dict] = {}
    for line in history_lines(vault):
        folded[line["id"]] = line
    return folded


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    full_env.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def make_vault(tmp_path: Path) -> Callable[[str], Path]:
    """A vault whose watchkeeper.toml is the given text (dedented)."""

    def make(config: str, name: str = "vault") -> Path:
        vault = tmp_path / name
        ensure_layout(vault)
        (vault / "watchkeeper.toml").write_text(textwrap.dedent(config))
        return vault

    return make


def keeper_log(vault: Path) -> str:
    path = vault / "Logs" / "watchkeeper.log"
    return path.read_text(errors="replace") if path.exists() else ""


def lock_record(vault: Path) -> dict[str, Any]:
    """The lock file read as plain text: probing it with flock (control.find_socket) while
    a keeper starts could make that keeper think the vault is taken."""
    try:
        record = json.loads((vault / "Logs" / ".watchkeeper.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def stop_processes(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM each one still running; SIGKILL one that has not exited 20 s later."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Daemons:
    """`watchkeeper --daemon` processes, each waited for until its socket is noted in the
    lock file, and all stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.started: list[subprocess.Popen] = []

    def start(self, vault: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        base = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
        output = self.scratch / f"daemon-{len(self.started)}.out"
        # A file, not a pipe nobody reads: a full pipe would stall the keeper.
        with output.open("w") as out:
            process = subprocess.Popen(
                [str(CLI), "--daemon", "--vault", str(vault)],
                env={**base, "NO_COLOR": "1", **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.started.append(process)

        def serving() -> bool:
            record = lock_record(vault)
            return (
                process.poll() is not None
                or (record.get("pid") == process.pid and "socket" in record)
                or "control socket unavailable" in keeper_log(vault)
            )

        wait_for(serving, timeout=60)
        assert process.poll() is None, output.read_text()
        assert "socket" in lock_record(vault), output.read_text()
        return process

    def stop_all(self) -> None:
        stop_processes(self.started)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def daemon(daemons: Daemons) -> Callable[..., subprocess.Popen]:
    return daemons.start


# ---- a keeper in this process (core/keeper.py), for the tests that drive one ----------


async def started_keeper(vault: Path) -> Keeper:
    """A keeper on `vault`, holding its lock, started (not serving)."""
    from watchkeeper.core.config import load_config
    from watchkeeper.core.keeper import Keeper
    from watchkeeper.core.lock import acquire

    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    return keeper


async def until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Wait on the running loop until `condition()` holds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def finish(keeper: Keeper, serving: asyncio.Task[None] | None = None) -> None:
    """Stop a keeper from started_keeper() (and its serve() task) and let its lock go."""
    await keeper.stop(grace=5)
    if serving is not None:
        await serving
    assert keeper.lock is not None
    keeper.lock.release()


def write_past_run(vault: Path, job: str, ago: timedelta, status: str = "success") -> None:
    """A run an earlier keeper left in the history, started `ago` before now: still
    `running`, or ended a second after its start."""
    started = utc_now() - ago
    writer = HistoryWriter(vault / "Logs" / "history")
    writer.append(
        RunRecord(
            id=f"past-{job}",
            job=job,
            project=vault.name,
            started_at=started,
            status=status,
            trigger="schedule",
            host="earlier",
            completed_at=None if status == "running" else started + timedelta(seconds=1),
            duration_ms=None if status == "running" else 1000,
        )
    )
    writer.close()


def finals(vault: Path, job: str | None = None) -> list[dict[str, Any]]:
    """Final history records (not `running`), of `job` or of every job."""
    return [
        record
        for record in final_records(vault).values()
        if record["status"] != "running" and (job is None or record["taskId"] == job)
    ]
