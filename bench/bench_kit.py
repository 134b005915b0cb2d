"""What several benchmarks share: ending a process they started, a figure in milliseconds,
and a job's spawn lateness as the keeper takes its runs back from the executor."""

from __future__ import annotations

import signal
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchkeeper.core.keeper import Keeper
    from watchkeeper.core.runtime import ActiveRun
    from watchkeeper.core.seams import Started


def stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM if still running; SIGKILL if it has not exited `timeout` seconds later."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ms(values: list[float], fraction: float, digits: int = 3) -> float | None:
    """The value at `fraction` of the sorted seconds, in milliseconds; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, digits)


class SlotLateness:
    """How late `job`'s slot runs started (seconds), those started while `measuring`."""

    def __init__(self, keeper: Keeper, job: str = "tick") -> None:
        self.job = job
        self.late: list[float] = []
        self.measuring = False
        keeper.runs.on_started.append(self._started)

    def _started(self, active: ActiveRun, run: Started) -> None:
        request = active.request
        if self.measuring and request.job == self.job and request.due_mono is not None:
            self.late.append(run.started_mono - request.due_mono)
