"""Shared test helpers: real vaults in tmp dirs, the real CLI, waiting on conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.lock import holder
from core.vault import ensure_layout

CLI = Path(sys.executable).parent / "watchkeeper"


def wait_for(
    condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
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


async def pilot_until(pilot: Any, condition: Callable[[], object], timeout: float = 10.0) -> None:
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
        for raw in segment.read_text().splitlines():
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


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Starts `watchkeeper --daemon` on a vault and waits until it serves its control
    socket. Its stderr (the mirrored keeper log) goes to a file: a pipe nobody reads
    would fill and stall it. Whatever is still running at the end gets SIGTERM."""
    started: list[subprocess.Popen] = []
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}

    def start(vault: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        with (tmp_path / f"daemon-{len(started)}.err").open("w") as err:
            process = subprocess.Popen(
                [str(CLI), "--daemon", "--vault", str(vault)],
                env={**env, "NO_COLOR": "1", **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        started.append(process)

        def serving() -> bool:
            record = holder(vault) or {}
            return record.get("pid") == process.pid and "socket" in record

        wait_for(lambda: serving() or process.poll() is not None)
        assert process.poll() is None, (tmp_path / f"daemon-{len(started) - 1}.err").read_text()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
