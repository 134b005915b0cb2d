"""The Store of a cluster keeper (core/seams.py): history, the file ledger, quota starts
and pause state in PostgreSQL, so the keeper that leads next finds them all.

Writes go through one fenced writer (core/cluster/pgwriter.py): buffered per loop turn,
one transaction each, refused once this keeper's epoch no longer leads, kept in memory
while the database is down. The leader also writes what the one-host store writes
(Logs/history/*.jsonl, Logs/files.jsonl, Logs/state.toml) as an export that `jq` and the
file-reading commands go on reading.

The keeper's role (core/cluster/role.py) sets `epoch` (None: not leading, writes are
refused here) and `fenced_callback` (called with the refused epoch).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from watchkeeper.core import history as hist
from watchkeeper.core.appender import Log
from watchkeeper.core.cluster import reads
from watchkeeper.core.cluster.dsn import DatabaseUnavailable
from watchkeeper.core.cluster.pgledger import PgLedger
from watchkeeper.core.cluster.pgwriter import FencedWriter
from watchkeeper.core.history import Query, RunRecord, Start
from watchkeeper.core.history_writer import HistoryWriter
from watchkeeper.core.ledger import LEDGER_NAME
from watchkeeper.core.quota import started
from watchkeeper.core.state import RuntimeState, load_state, save_state
from watchkeeper.core.store import JsonlStore

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.seams import LastRuns

RUN_UPSERT = """
INSERT INTO watchkeeper.runs AS r
    (cluster, run_id, job, status, trigger, host, started, finished, duration_ms, record, epoch)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (cluster, run_id) DO UPDATE SET
    job = EXCLUDED.job, status = EXCLUDED.status, trigger = EXCLUDED.trigger,
    host = EXCLUDED.host, started = EXCLUDED.started, finished = EXCLUDED.finished,
    duration_ms = EXCLUDED.duration_ms, record = EXCLUDED.record, epoch = EXCLUDED.epoch
-- a run's running line comes before its final one: written again late, it undoes nothing
WHERE r.status = 'running' OR EXCLUDED.status <> 'running'
"""
STATE_UPSERT = """
INSERT INTO watchkeeper.state (cluster, state) VALUES (%s, %s::jsonb)
ON CONFLICT (cluster) DO UPDATE SET state = EXCLUDED.state, updated_at = clock_timestamp()
"""
PRUNE = (
    "DELETE FROM watchkeeper.runs WHERE cluster = %s AND status <> 'running'"
    " AND coalesce(finished, started) < %s"
)
# An escaped lone surrogate (a file name that is not UTF-8), not preceded by an escaped
# backslash: jsonb refuses it.
_LONE_SURROGATE = re.compile(r"(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}")


def run_params(cluster: str, record: RunRecord) -> tuple[Any, ...]:
    line = record.to_line().decode().rstrip("\n")
    if "\\ud" in line:
        # The database's copy shows such a name with U+FFFD; the JSONL export keeps it.
        line = _LONE_SURROGATE.sub(lambda m: m.group(1) + "\\ufffd", line)
    return (
        cluster,
        record.id,
        record.job,
        record.status,
        record.trigger,
        record.host,
        record.started_at,
        record.completed_at,
        record.duration_ms,
        line,
    )


class PgHistory:
    """The History seam: each line upserted into watchkeeper.runs, and appended to the
    JSONL export while this keeper leads."""

    def __init__(self, export: HistoryWriter, writer: FencedWriter) -> None:
        self.export = export
        self.writer = writer

    def append(self, record: RunRecord) -> None:
        what = f"run {record.id} of {record.job} ({record.status})"
        if self.writer.add(RUN_UPSERT, run_params(self.writer.cluster, record), what, record):
            self.export.append(record)

    def flush(self) -> None:
        self.export.flush()
        self.writer.kick()

    def close(self) -> None:
        self.export.close()


class PgStore:
    def __init__(self, config: Config, log: Log, keeper_id: str) -> None:
        if config.cluster is None:
            raise ValueError(f"{config.path} has no [cluster] table")
        self.vault = config.vault
        self.log = log
        self.export = JsonlStore(config.vault, log)
        self.cluster = config.cluster
        self.writer = FencedWriter(config.cluster.database, config.cluster.name, keeper_id, log)
        self.history = PgHistory(self.export.history, self.writer)
        self.ledger = PgLedger(config.vault / "Logs" / LEDGER_NAME, self.writer, log)
        self._state: RuntimeState | None = None

    @property
    def epoch(self) -> int | None:
        return self.writer.epoch

    @epoch.setter
    def epoch(self, epoch: int | None) -> None:
        self.writer.epoch = epoch

    @property
    def fenced_callback(self) -> Callable[[int], None] | None:
        return self.writer.fenced_callback

    @fenced_callback.setter
    def fenced_callback(self, callback: Callable[[int], None] | None) -> None:
        self.writer.fenced_callback = callback

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.export.attach(loop)
        self.ledger.out.retry_later = loop.call_later
        self.writer.attach(loop)

    async def drained(self) -> None:
        """Until every write made so far is in the database (or refused)."""
        await self.writer.drained()

    def _read(self, question: Callable[[reads.Conn, str], Any]) -> Any:
        """A read on a connection of its own; DatabaseUnavailable when it cannot be had."""
        return reads.answer(self.cluster, question)

    def _unwritten(self) -> dict[str, RunRecord]:
        """Each run's newest line that waits for the database."""
        return {w.record.id: w.record for w in self.writer.waiting() if w.record is not None}

    def open_runs(self, since: datetime) -> list[RunRecord]:
        # From since's UTC day on, as the JSONL store reads the segments of that day on.
        floor = datetime.combine(since.astimezone(UTC).date(), time(), UTC)
        found = {r.id: r for r in self._read(lambda c, name: reads.open_runs(c, name, floor))}
        for run_id, record in self._unwritten().items():
            if record.status != "running":
                found.pop(run_id, None)
            elif record.started_at >= floor:
                found[run_id] = record
        # A leader killed before its last writes' transaction left them only in the JSONL
        # export (written first, on the vault the keepers share): a run open there is
        # open; a run that ended there has that end written here, not closed again.
        exported = {r.id: r for r in self._export_runs(since)}
        if exported:
            known = dict(
                self._read(
                    lambda c, name: c.execute(
                        "SELECT run_id, status FROM watchkeeper.runs WHERE cluster = %s"
                        " AND run_id = ANY(%s)",
                        (name, list(exported)),
                    ).fetchall()
                )
            )
            waiting = self._unwritten()
            for run_id, record in exported.items():
                if known.get(run_id, "running") != "running" or run_id in waiting:
                    continue
                if record.status == "running":
                    found.setdefault(run_id, record)
                else:
                    found.pop(run_id, None)
                    what = f"run {run_id} of {record.job} ({record.status}, from the export)"
                    self.writer.add(
                        RUN_UPSERT, run_params(self.writer.cluster, record), what, record
                    )
        return sorted(found.values(), key=lambda r: (r.started_at, r.id), reverse=True)

    def _export_runs(self, since: datetime) -> list[RunRecord]:
        return hist.runs_since(self.export.directory, since).records

    def starts_since(self, since: float) -> list[tuple[str, float]]:
        moment = datetime.fromtimestamp(since, UTC)
        runs = {
            run_id: Start(job, at, status, code)
            for run_id, job, at, status, code in self._read(
                lambda c, name: reads.starts(c, name, moment)
            )
        }
        for record in self._unwritten().values():
            at = record.started_at.timestamp()
            if at >= since:
                runs[record.id] = Start(record.job, at, record.status, record.exit_code)
        return [(start.job, start.at) for start in runs.values() if started(start)]

    def recent_runs(self, query: Query) -> list[RunRecord]:
        result: list[RunRecord] = self._read(lambda c, name: reads.recent(c, name, query).records)
        return result

    def last_runs(self, jobs: Iterable[str], tz: ZoneInfo) -> LastRuns:
        from watchkeeper.core.seams import LastRuns

        names = list(jobs)
        return LastRuns(*self._read(lambda c, name: reads.last_runs(c, name, names, tz)))

    def prune(self, retention_days: int, today: date) -> list[Path]:
        if self.writer.epoch is not None:  # the leader's work; a standby leaves it
            cutoff = datetime.combine(today - timedelta(days=retention_days), time(), UTC)
            self.writer.add(
                PRUNE, (self.writer.cluster, cutoff), "history retention", stamped=False
            )
        return self.export.prune(retention_days, today)

    def load_state(self) -> RuntimeState:
        """The cluster's pauses. Before any was written: the vault's Logs/state.toml (a
        vault that turns cluster mode on keeps its pauses). While a change waits for the
        database, or the database is down after a first read, the one known here."""
        if self._state is not None and any(w.sql == STATE_UPSERT for w in self.writer.waiting()):
            return _copy(self._state)
        try:
            data = self._read(reads.pause_state)
        except DatabaseUnavailable as error:
            if self._state is None:
                raise
            self.log.warning(f"pause state not read again, keeping what is known: {error}")
            return _copy(self._state)
        self._state = reads.runtime_state(data) or load_state(self.vault)
        return _copy(self._state)

    def update_state(self, change: Callable[[RuntimeState], None]) -> RuntimeState:
        state = self.load_state() if self._state is None else _copy(self._state)
        change(state)
        self._state = state
        self.writer.add(
            STATE_UPSERT, (self.writer.cluster, _to_json(state)), "pause state", stamped=False
        )
        try:
            save_state(self.vault, state)  # the export the file-reading commands see
        except OSError as error:
            self.log.warning(f"pause state not exported to Logs/: {error}")
        return _copy(state)

    def close(self) -> None:
        self.writer.close()
        self.export.close()
        self.ledger.out.close()


def _copy(state: RuntimeState) -> RuntimeState:
    return RuntimeState(state.paused, set(state.paused_jobs), state.theme)


def _to_json(state: RuntimeState) -> str:
    data = {"paused": state.paused, "paused_jobs": sorted(state.paused_jobs), "theme": state.theme}
    return json.dumps(data)
