"""Finding and ending processes a dead keeper's runs left behind.

Every run's processes carry WATCHKEEPER_RUN_ID in their environment, and children
inherit it, so /proc tells which processes belong to which run even after the keeper
that started them was killed, with no pid files that could point at a reused pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def processes_of_runs(run_ids: Iterable[str]) -> dict[int, str]:
    """pid -> run id for every live process whose environment names one of `run_ids`."""
    wanted = {f"WATCHKEEPER_RUN_ID={run_id}".encode(): run_id for run_id in run_ids}
    if not wanted:
        return {}
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            run_id = wanted.get(variable)
            if run_id is not None:
                found[int(entry.name)] = run_id
                break
    return found


def _alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def end_leftovers(run_ids: set[str], grace: float) -> dict[str, int]:
    """TERM every process of these runs, KILL what is left after `grace`; counts per run."""
    found = processes_of_runs(run_ids)
    if not found:
        return {}
    _signal_all(found, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in found):
        await asyncio.sleep(0.05)
    _signal_all([pid for pid in found if _alive(pid)], signal.SIGKILL)
    counts: dict[str, int] = {}
    for run_id in found.values():
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts
