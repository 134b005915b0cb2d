"""Dashboard.md, metrics.prom and the `quota` event: what the keeper tells the outside
world about its runs, rewritten a while after each change, never per run."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from watchkeeper.core import tuning
from watchkeeper.core.dashboard import RECENT_ROWS, dashboard_lines, write_dashboard
from watchkeeper.core.faults import described
from watchkeeper.core.history import Query, RunRecord
from watchkeeper.core.metrics import Metrics, write_metrics
from watchkeeper.core.slices import Slices, text_of
from watchkeeper.core.vault import FolderSummary, summarize_all

if TYPE_CHECKING:
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from watchkeeper.core.control_protocol import JobView, Snapshot
    from watchkeeper.core.events import EventBus
    from watchkeeper.core.logs import KeeperLog
    from watchkeeper.core.runtime import JobRuntime
    from watchkeeper.core.seams import Clock, Store


class Shown(Protocol):
    """What the outputs read of the keeper."""

    @property
    def vault(self) -> Path: ...
    @property
    def tz(self) -> ZoneInfo: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def log(self) -> KeeperLog: ...
    @property
    def jobs(self) -> Mapping[str, JobRuntime]: ...
    def job_view(self, runtime: JobRuntime) -> JobView: ...
    def snapshot(self) -> Snapshot: ...
    def snapshot_head(self) -> Snapshot: ...
    def sleep_for(self) -> float: ...
    def behind(self) -> bool: ...


def _newest(records: list[RunRecord]) -> list[RunRecord]:
    """The RECENT_ROWS newest by start; of two records of a run, the later listed."""
    by_id = {record.id: record for record in records}
    return heapq.nlargest(RECENT_ROWS, by_id.values(), key=lambda record: record.started_at)


class Outputs:
    def __init__(self, keeper: Shown) -> None:
        self.keeper = keeper
        self.metrics = Metrics()
        # The newest runs started (or refused) and failed; updated in place as they end.
        self.recent: deque[RunRecord] = deque(maxlen=RECENT_ROWS)
        self.failures: deque[RunRecord] = deque(maxlen=RECENT_ROWS)
        # The newest runs and failures in the history when this keeper started.
        self._history_seen: tuple[list[RunRecord], list[RunRecord]] = ([], [])
        self._interval = tuning.OUTPUT_INTERVAL
        # A write that is due, or being gathered.
        self._due: asyncio.Handle | None = None
        # Something changed since the write being gathered took its snapshot.
        self._stale = False
        self._renders: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None  # set as the keeper starts

    def read_history(self, store: Store) -> None:
        """What the history held at the start, read once: later runs are known in memory,
        so a busy day's history is not read again for each write."""
        since = datetime.now(self.keeper.tz) - timedelta(days=1)
        self._history_seen = (
            store.recent_runs(Query(limit=RECENT_ROWS)),
            store.recent_runs(Query(status="failure", since=since, limit=RECENT_ROWS)),
        )

    def ended(self, record: RunRecord, ran: bool) -> None:
        """A final record; `ran` is False for a run that never started (it counts in the
        metrics but has no duration)."""
        if record.status == "failure":
            self.failures.append(record)
        duration = record.duration_ms if ran else None
        self.metrics.observe_run(record.job, record.status, duration, time.time())
        self.changed()

    def changed(self) -> None:
        self._stale = True
        if self._due is None and self.loop is not None and not self.keeper.stopping:
            self._due = self.loop.call_later(self._interval, self._refresh)

    def _refresh(self) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self.refresh())
        self._renders.add(task)
        task.add_done_callback(self._renders.discard)

    async def refresh(self) -> None:
        """Dashboard.md and metrics.prom, made on the loop a slice at a time so due slots
        fire in between (a thousand jobs take some 40 ms); the vault scan and the writes
        go to threads. Made in a thread they would cost slots more: a thread holding the
        GIL makes the loop wait for it after each of its many system calls."""
        keeper = self.keeper
        try:
            gap = keeper.sleep_for()
            if gap < tuning.OUTPUT_GAP:
                await asyncio.sleep(gap + tuning.AFTER_SLOT)  # start right after the next slot
            folders = await asyncio.to_thread(summarize_all, keeper.vault)
            slices = Slices(behind=keeper.behind)
            views = []
            for runtime in list(keeper.jobs.values()):
                views.append(keeper.job_view(runtime))
                await slices.give_way()
            self._stale = False
            snapshot = {**keeper.snapshot_head(), "jobs": views}
            self._publish_quota(snapshot)
            dashboard, metrics = self.lines(snapshot, folders)
            texts = [await slices.collect(dashboard), await slices.collect(metrics)]
            await asyncio.to_thread(self._write, *texts)
            # Keep this work to about 5% of the loop's time, however many jobs there are.
            self._interval = max(tuning.OUTPUT_INTERVAL, 20 * slices.busy)
        except Exception as error:  # a bad write must not stop the next ones
            keeper.log.error(f"cannot make Dashboard.md / metrics.prom: {described(error)}")
        finally:
            self._due = None
        if self._stale:
            self.changed()  # what came after the snapshot goes out with the next write

    def write_now(self) -> None:
        """Gather, render and write at once: the last write, as the keeper stops."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        try:
            snapshot = self.keeper.snapshot()
            self._publish_quota(snapshot)
            lines = self.lines(snapshot, summarize_all(self.keeper.vault))
            self._write(*map(text_of, lines))
        except Exception as error:
            self.keeper.log.error(f"cannot make Dashboard.md / metrics.prom: {described(error)}")

    async def close(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        await asyncio.gather(*self._renders, return_exceptions=True)

    def _publish_quota(self, snapshot: Mapping[str, Any]) -> None:
        # Quota changes with every start; subscribers get it at this pace, not per run.
        self.keeper.bus.publish(
            "quota", usage=snapshot["quota"], runs_last_hour=snapshot["runs_last_hour"]
        )

    def lines(
        self, snapshot: Mapping[str, Any], folders: list[FolderSummary]
    ) -> tuple[Iterator[str], Iterator[str]]:
        """Dashboard.md's lines and metrics.prom's. The Dashboard's runs and failures are
        the newest of the history's at the start and this keeper's since."""
        recent = _newest([*self._history_seen[0], *self.recent])
        failures = _newest([*self._history_seen[1], *self.failures])
        tz = self.keeper.tz
        now = datetime.fromtimestamp(self.keeper.clock.time(), tz)
        return (
            dashboard_lines(snapshot, folders, recent, failures, tz, now),
            self.metrics.lines(snapshot, folders),
        )

    def _write(self, dashboard: str, metrics: str) -> None:
        try:
            write_dashboard(self.keeper.vault, dashboard)
            write_metrics(self.keeper.vault, metrics)
        except OSError as error:
            self.keeper.log.error(
                f"cannot write Dashboard.md / metrics.prom: {error.strerror or error}"
            )
