"""The keeper's three seams to the world: what time it is, where a run runs, where
records are kept. Each a small Protocol with the implementations named below; the
scheduling loop (core/keeper.py, core/slots.py, core/runs.py) knows only these.

- Clock: SystemClock (the real one) and ManualClock (tests: time moves when told).
- Executor: core.runner.LocalExecutor (process groups on this host). A cluster's
  remote workers (procrastinate over PostgreSQL) are a second one.
- Store: core.store.JsonlStore (Logs/history/*.jsonl, the file ledger, state.toml). A
  PostgreSQL store is a second one.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from watchkeeper.core.history import Query, RunRecord
from watchkeeper.core.ledger import Ledger
from watchkeeper.core.precise import sleep_until
from watchkeeper.core.runner import RunOutcome, RunSpec
from watchkeeper.core.state import RuntimeState

# ---- Clock ---------------------------------------------------------------------------


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (steps with the system clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; intervals are measured on it."""
        ...

    def sleep_until(self, monotonic: float) -> None:
        """Block until monotonic() >= `monotonic`, as precisely as the system allows."""
        ...


def utc(clock: Clock) -> datetime:
    """The clock's wall time as an aware UTC datetime, as records carry it."""
    return datetime.fromtimestamp(clock.time(), UTC)


class SystemClock:
    # The functions themselves rather than methods that call them: the keeper reads the
    # clocks a dozen times a run, and each method would add a Python call.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
    sleep_until = staticmethod(sleep_until)


class ManualClock:
    """Time stands still until a test moves it: `advance` moves both clocks, `step`
    only the wall clock (as an NTP step or a suspend does)."""

    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1_000.0) -> None:
        self.wall = wall
        self.mono = mono

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep_until(self, monotonic: float) -> None:
        self.advance(max(0.0, monotonic - self.mono))

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall += seconds


# ---- Executor ------------------------------------------------------------------------


class Started(Protocol):
    """A run the executor has started, before anyone watches it."""

    @property
    def pid(self) -> int | None: ...

    @property
    def started_mono(self) -> float: ...


class RunHandle(Protocol):
    """A run being watched: its output goes to the callback given to watch(), its end
    to `done` and to on_end()'s listeners (core.runner.Ending does both)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def started_mono(self) -> float: ...

    @property
    def spec(self) -> RunSpec: ...

    @property
    def done(self) -> asyncio.Future[RunOutcome]: ...

    def on_end(self, listener: Callable[[RunOutcome], None]) -> None:
        """Call `listener` with the outcome in the loop turn the run ends (a callback on
        `done` runs a turn later), or now if it has ended."""
        ...

    def stop(self, status: str, reason: str) -> None:
        """End the run (its whole process group, or its worker's): `status` and `reason`
        become its outcome's."""
        ...


# What submit() gives back, batched: each token with what started, or why it did not.
Delivered = list[tuple[Any, Any]]


class Executor(Protocol):
    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        """Start each spec. The `deliver` callback the executor was made with gets
        (token, Started or the exception) on the loop, in batches."""
        ...

    def watch(self, spec: RunSpec, started: Any, on_output: Callable[[bytes], None]) -> RunHandle:
        """Follow a started run: stream its output, report its end. Raises OSError when
        it cannot be watched (the run is ended then)."""
        ...

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> RunHandle:
        """Start and watch at once (hooks: rare, small, not worth a batch)."""
        ...

    def shutdown(self) -> None:
        """Let what was submitted start, then let go of threads or connections."""
        ...


# ---- Store ---------------------------------------------------------------------------


class History(Protocol):
    def append(self, record: RunRecord) -> None:
        """A run's line: `running` when it starts, the final one when it ends."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LastRuns(NamedTuple):
    """What a keeper learns of past runs as it starts."""

    last: dict[str, RunRecord]  # each job's newest final record
    today: dict[str, int]  # "ok" / "failed": runs ended since midnight
    bad_lines: int  # history lines that could not be read


class Store(Protocol):
    @property
    def history(self) -> History: ...

    @property
    def ledger(self) -> Ledger: ...

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write from `loop` from now on (batched per loop turn, retried later)."""
        ...

    def open_runs(self, since: datetime) -> list[RunRecord]:
        """Runs a keeper that died left `running`."""
        ...

    def starts_since(self, since: float) -> Iterable[tuple[str, float]]:
        """(job, start time) of runs that started since `since` (the quota's window)."""
        ...

    def recent_runs(self, query: Query) -> list[RunRecord]:
        """The newest `query.limit` runs matching `query`, newest first by start."""
        ...

    def last_runs(self, jobs: Iterable[str], tz: ZoneInfo) -> LastRuns:
        """Each of `jobs`' newest final record (within a week), and today's counts in `tz`."""
        ...

    def prune(self, retention_days: int, today: date) -> list[Path]: ...

    def load_state(self) -> RuntimeState: ...

    def update_state(self, change: Callable[[RuntimeState], None]) -> RuntimeState: ...

    def close(self) -> None: ...
