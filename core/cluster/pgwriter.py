"""The one writer of a keeper's records to the cluster's database: what the loop gathers
in a turn goes in one transaction, fenced on the keeper's epoch, in the order it came.

- Fenced: a transaction commits only if `watchkeeper.leads(cluster, epoch)` holds at its
  start and again just before COMMIT, so a keeper whose lease lapsed (paused, cut off)
  changes nothing. A refused batch is recorded in watchkeeper.rejections, dropped, and
  `fenced_callback(epoch)` tells the keeper to step down. A write made while `epoch` is
  None (not leading) is refused at once, without the database.
- Nothing lost: while the database is down the writes wait in memory, in order, and are
  tried again with backoff. Nothing doubled: every write is idempotent (runs upsert by
  run id, ledger lines by their entry id), so a batch whose COMMIT was cut off can be
  written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from watchkeeper.core.appender import Log
from watchkeeper.core.cluster.db import connect, connect_sync
from watchkeeper.core.cluster.dsn import DatabaseUnavailable, unavailable

if TYPE_CHECKING:
    from watchkeeper.core.history import RunRecord

# Seconds between tries while the database is down: soon at first (a restart takes a
# second or two), then no busier than this.
BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)
MAX_WAITING = 100_000  # writes kept while the database is down; past that the oldest go

_LEADS = "SELECT watchkeeper.leads(%s, %s)"


@dataclass(frozen=True)
class Write:
    sql: str
    params: tuple[Any, ...]
    what: str  # how a rejection or a loss names it: "run 01J… of backup"
    epoch: int
    record: RunRecord | None = None  # a run's line: reads overlay the ones not written yet


class Refused(Exception):
    """The epoch no longer leads: the batch is not written."""


class FencedWriter:
    def __init__(self, dsn: str, cluster: str, keeper_id: str, log: Log) -> None:
        self.dsn, self.cluster, self.keeper_id, self.log = dsn, cluster, keeper_id, log
        self.epoch: int | None = None
        self.fenced_callback: Callable[[int], None] | None = None
        self.refused = 0  # writes refused (fenced or not leading), since start
        self.dropped = 0  # writes lost to the memory bound or to an error of their own
        self._waiting: deque[Write] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._down: str | None = None  # why the waiting writes are not in the database yet
        self._wake_due = False

    # ---- from the keeper -------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task = loop.create_task(self._run(), name="cluster store writer")
        self._task.add_done_callback(self._ended)
        if self._waiting:
            self.kick()

    def add(
        self,
        sql: str,
        params: tuple[Any, ...],
        what: str,
        record: RunRecord | None = None,
        *,
        stamped: bool = True,
    ) -> bool:
        """Queue a fenced write; False (and nothing queued) when this keeper does not lead.
        With `stamped`, the epoch is the statement's last parameter (the row says who
        wrote it)."""
        epoch = self.epoch
        if epoch is None:
            self.refused += 1
            self.log.warning(f"not the cluster's leader: {what} not written")
            return False
        if stamped:
            params = (*params, epoch)
        with self._lock:
            self._waiting.append(Write(sql, params, what, epoch, record))
            if len(self._waiting) > MAX_WAITING:
                lost = self._waiting.popleft()
                self.dropped += 1
                self.log.error(f"over {MAX_WAITING} writes wait for the database: {lost.what} lost")
            due, self._wake_due = self._wake_due, True
        if not due and self._loop is not None:
            # Once per loop turn: everything added in it goes in one transaction.
            self._loop.call_soon_threadsafe(self.kick)
        return True

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A fault of ours, not the database's: say so rather than keep writes silently.
            self.log.error(f"the cluster store's writer stopped: {task.exception()!r}")

    def kick(self) -> None:
        """Write what is waiting now (on the loop)."""
        with self._lock:
            self._wake_due = False
            busy = bool(self._waiting)
        if busy and self._wake is not None and self._idle is not None:
            self._idle.clear()
            self._wake.set()

    def waiting(self) -> list[Write]:
        """Writes not in the database yet, oldest first."""
        with self._lock:
            return list(self._waiting)

    async def drained(self) -> None:
        """Until every write added so far is in the database (or refused)."""
        self.kick()
        if self._idle is not None:
            await self._idle.wait()

    # ---- the writer task -------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        tries = 0
        while True:
            if not self.waiting():
                self._idle.set()
                await self._wake.wait()
            self._wake.clear()
            batch = self._batch()
            if not batch:
                continue
            try:
                await self._write(batch)
            except (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable) as e:
                await self._lost(e)
                self._note_down(e, len(self.waiting()))
                await asyncio.sleep(BACKOFF[min(tries, len(BACKOFF) - 1)])
                tries += 1
                continue
            except Refused:
                self._take(len(batch))
                await self._reject(batch)
            except psycopg.Error as error:
                # The data itself is refused (not the connection): trying again cannot help,
                # and it must not hold back everything behind it.
                self._take(len(batch))
                self.dropped += len(batch)
                self.log.error(
                    f"the cluster database refused {len(batch)} write(s) ({batch[0].what}, …): "
                    f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}"
                )
            else:
                self._take(len(batch))
                if self._down is not None:
                    self.log.warning(
                        f"cluster database back: wrote the writes kept since: {self._down}"
                    )
                    self._down = None
            tries = 0

    def _batch(self) -> list[Write]:
        """The oldest waiting writes of one epoch."""
        with self._lock:
            if not self._waiting:
                return []
            epoch = self._waiting[0].epoch
            batch = []
            for write in self._waiting:
                if write.epoch != epoch:
                    break
                batch.append(write)
            return batch

    def _take(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self._waiting.popleft()

    async def _write(self, batch: list[Write]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.dsn)
        conn, epoch = self._conn, batch[0].epoch
        async with conn.transaction():
            await self._check(conn, epoch)
            async with conn.cursor() as cursor:
                for sql, params in _groups(batch):
                    await cursor.executemany(sql, params)
            # Again at the end: a lease that lapsed while the batch was written fences it too.
            await self._check(conn, epoch)

    async def _check(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], epoch: int) -> None:
        row = await (await conn.execute(_LEADS, (self.cluster, epoch))).fetchone()
        if not (row and row[0]):
            raise Refused

    async def _reject(self, batch: list[Write]) -> None:
        epoch = batch[0].epoch
        self.refused += len(batch)
        what = _summary(batch)
        self.log.error(f"fenced: epoch {epoch} no longer leads the cluster; not written: {what}")
        try:
            assert self._conn is not None
            await self._conn.execute(
                "INSERT INTO watchkeeper.rejections (cluster, epoch, keeper_id, what)"
                " VALUES (%s, %s, %s, %s)",
                (self.cluster, epoch, self.keeper_id, what),
            )
        except psycopg.Error as error:
            self.log.warning(f"cannot record the rejection: {unavailable(self.dsn, error)}")
        if self.fenced_callback is not None:
            self.fenced_callback(epoch)

    async def _lost(self, error: BaseException) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def _note_down(self, error: BaseException, count: int) -> None:
        if self._down is not None:
            return
        reason = error if isinstance(error, DatabaseUnavailable) else unavailable(self.dsn, error)
        self._down = str(reason)
        self.log.error(f"{reason}; keeping {count} write(s) in memory until it is back")

    # ---- the end ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the writer and write what still waits, here and now (once: a database
        still down loses it, and says so)."""
        task, self._task = self._task, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.remove_done_callback(self._ended)
            task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            # A transaction of the cancelled task may be open: its socket closed, the
            # server rolls it back, so the writes below do not wait on its locks.
            conn.pgconn.finish()
        while batch := self._batch():
            try:
                self._write_sync(batch)
            except Refused:
                self._take(len(batch))
                self.refused += len(batch)
                self.log.error(f"fenced at stop: not written: {_summary(batch)}")
            except (psycopg.Error, DatabaseUnavailable) as error:
                left = self.waiting()
                self._take(len(left))
                self.dropped += len(left)
                self.log.error(f"{len(left)} write(s) to the cluster database lost: {error}")
                return

    def _write_sync(self, batch: list[Write]) -> None:
        with connect_sync(self.dsn) as conn, conn.transaction():
            row = conn.execute(_LEADS, (self.cluster, batch[0].epoch)).fetchone()
            if not (row and row[0]):
                raise Refused
            with conn.cursor() as cursor:
                for sql, params in _groups(batch):
                    cursor.executemany(sql, params)
        self._take(len(batch))


def _groups(batch: list[Write]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive writes of one statement together, in order (one executemany each)."""
    groups: list[tuple[str, list[tuple[Any, ...]]]] = []
    for write in batch:
        if groups and groups[-1][0] == write.sql:
            groups[-1][1].append(write.params)
        else:
            groups.append((write.sql, [write.params]))
    return groups


def _summary(batch: list[Write]) -> str:
    shown = "; ".join(write.what for write in batch[:5])
    return shown + (f"; and {len(batch) - 5} more" if len(batch) > 5 else "")
