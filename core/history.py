"""Execution history: daily JSONL segments in Logs/history/, folded by run id.

The format lives in history_format, the writer in history_writer and the block reader in
history_scan; this module answers the questions (recent runs, open runs, stats) and keeps
the names every caller imports from here.
"""

from __future__ import annotations

import contextlib
import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import filterfalse
from pathlib import Path

from watchkeeper.core.history_format import FINAL_STATUSES as FINAL_STATUSES
from watchkeeper.core.history_format import GLYPHS as GLYPHS
from watchkeeper.core.history_format import SEGMENT_NAME as SEGMENT_NAME
from watchkeeper.core.history_format import STATUSES as STATUSES
from watchkeeper.core.history_format import RunRecord as RunRecord
from watchkeeper.core.history_format import elapsed_ms as elapsed_ms
from watchkeeper.core.history_format import iso as iso
from watchkeeper.core.history_format import parse_iso as parse_iso
from watchkeeper.core.history_format import segment_path as segment_path
from watchkeeper.core.history_format import status_label as status_label
from watchkeeper.core.history_format import utc_now as utc_now
from watchkeeper.core.history_scan import (
    ID,
    JOB,
    STARTED,
    STATUS,
    Block,
    Row,
    Scan,
    day_start,
    get_duration,
    get_id,
    get_start_and_id,
    get_status,
    parse_line,
    raw,
    row_record,
    segments,
    stamp,
    unraw,
)
from watchkeeper.core.history_writer import HistoryWriter as HistoryWriter
from watchkeeper.core.stats import nearest_rank

_FINAL_ORDER = tuple(status for status in STATUSES if status in FINAL_STATUSES)


@dataclass
class Query:
    job: str | None = None
    status: str | None = None  # one of STATUSES
    since: datetime | None = None  # runs STARTED at/after this
    limit: int = 50

    def __post_init__(self) -> None:
        # A misspelt status would otherwise match nothing, silently.
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}: one of {', '.join(STATUSES)}")


@dataclass
class QueryResult:
    records: list[RunRecord]  # newest first by started_at
    bad_lines: int  # torn / garbage lines skipped while reading


@dataclass
class JobStats:
    job: str
    runs: int  # runs with a final record
    counts: dict[str, int]  # every final status -> runs ending so
    success_rate: float | None  # success / (runs - skipped - cancelled); None when that is 0
    p50_ms: int | None  # nearest-rank, over the runs that have a duration
    p95_ms: int | None
    last_run: RunRecord  # the newest final run by started_at


# Runs that end close together may be written a hair out of order (and clocks step), so a
# reader keeps reading this far past the write time at which it may stop.
WRITE_SLACK = timedelta(minutes=5)


def _collect(
    directory: Path,
    *,
    floor: bytes,
    job: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> QueryResult:
    """Folded runs matching the filters, newest first, reading no further back than needed."""
    if limit is not None and limit <= 0:
        return QueryResult([], 0)
    scan = Scan(directory, floor)
    job_key = raw(job) if job is not None else None
    # The whole field, so a short job name is not found inside every other line.
    job_needle = b'"taskId":"' + job_key + b'"' if job_key is not None else None
    status_key = status.encode() if status is not None else None
    since_key = stamp(since) if since is not None else b""
    seen: set[bytes] = set()
    # (startedAt, id, row, block): a min-heap holding the `limit` newest when limited.
    found: list[tuple[bytes, bytes, Row, Block]] = []
    for block in scan.blocks():
        # All lines of a run name its job, so a block without the name holds nothing that
        # folds into the answer: a rarely run job is found without parsing the rest.
        if job_needle is not None and block.buf.find(job_needle, block.start, block.stop) < 0:
            continue
        for row in reversed(scan.rows(block)):
            run_id = row[ID]
            if run_id in seen:
                continue  # an earlier line of a run whose last line we already had
            seen.add(run_id)
            if (
                (status_key is not None and row[STATUS] != status_key)
                or (job_key is not None and row[JOB] != job_key)
                or row[STARTED] < since_key
            ):
                continue
            item = (row[STARTED], run_id, row, block)
            if limit is None or len(found) < limit:
                heapq.heappush(found, item)
            elif item[:2] > found[0][:2]:
                heapq.heapreplace(found, item)
        if limit is not None and len(found) == limit:
            # Any run started after the limit-th newest start was written after it too. Runs
            # end out of start order, so the stop is on write time, never on startedAt.
            oldest = datetime.fromisoformat(found[0][0].decode())
            scan.floor = max(scan.floor, stamp(oldest - WRITE_SLACK))
    records = []
    for _, _, row, block in sorted(found, key=lambda item: item[:2], reverse=True):
        line = block.line_of(row)
        record = parse_line(line) if line is not None else None
        if record is None:
            scan.bad_lines += 1  # the right shape up front, broken further on
        else:
            records.append(record)
    return QueryResult(records, scan.bad_lines)


def recent(directory: Path, query: Query) -> QueryResult:
    """The newest `query.limit` runs matching the query, newest first by start."""
    return _collect(
        directory,
        floor=stamp(query.since - WRITE_SLACK) if query.since is not None else b"",
        job=query.job,
        status=query.status,
        since=query.since,
        limit=query.limit,
    )


def runs_since(directory: Path, since: datetime) -> QueryResult:
    """Every run started at/after `since`, newest first (the quota window's rebuild)."""
    return _collect(directory, floor=stamp(since - WRITE_SLACK), since=since)


@dataclass(frozen=True)
class Start:
    """A run's start as the quota window needs it, read without parsing its whole line."""

    job: str
    at: float  # started_at, epoch seconds
    status: str  # its last line's
    exit_code: int | None  # read for cancelled runs only: whether they had begun


def starts_since(directory: Path, since: datetime) -> list[Start]:
    """Every run started at/after `since`, newest line per run (the quota window's
    rebuild): the fields from the line's position, as stats reads them."""
    scan = Scan(directory, stamp(since - WRITE_SLACK))
    since_key = stamp(since)
    seen: set[bytes] = set()
    found = []
    for block in scan.blocks():
        for row in reversed(scan.rows(block)):
            if row[ID] in seen:
                continue
            seen.add(row[ID])
            if row[STARTED] < since_key:
                continue
            exit_code = None
            if row[STATUS] == b"cancelled":
                line = block.line_of(row)
                record = parse_line(line) if line is not None else None
                exit_code = record.exit_code if record is not None else None
            at = datetime.fromisoformat(row[STARTED].decode()).timestamp()
            found.append(Start(unraw(row[JOB]), at, row[STATUS].decode(), exit_code))
    return found


def open_runs(directory: Path, since: datetime) -> list[RunRecord]:
    """Runs whose last line is still `running`, in the segments from `since`'s UTC day on."""
    first_day = since.astimezone(UTC).date()
    return _collect(directory, floor=stamp(day_start(first_day)), status="running").records


def _nearest_rank(ordered: list[bytes], percent: int) -> int | None:
    return int(nearest_rank(ordered, percent)) if ordered else None


@dataclass
class _Tally:
    """One job's runs so far; `newest` keeps its block alive to cut out the line at the end."""

    newest: Row
    block: Block
    counts: Counter[bytes] = field(default_factory=Counter)
    durations: list[bytes] = field(default_factory=list)  # digits, as in the file


def stats(directory: Path, since: datetime) -> dict[str, JobStats]:
    """Per job, over the runs started at/after `since` that have a final line.

    Only final lines are read: a run's final line is its last (running comes first), so
    folding the final lines alone by id gives the same runs at half the cost. Each block
    is tallied while its rows are fresh in the CPU cache, with the per-run work in C
    where it can be: a day holds some 35k runs.
    """
    scan = Scan(directory, stamp(since - WRITE_SLACK))
    since_key = stamp(since)
    seen: set[bytes] = set()
    tallies: dict[bytes, _Tally] = {}
    for block in scan.blocks():
        rows = scan.final_rows(block)
        last = dict(zip(map(get_id, rows), rows, strict=True))  # the block's last line wins
        for run_id in seen.intersection(last):
            del last[run_id]  # a newer block had this run's last line
        seen.update(last)
        by_job: dict[bytes, list[Row]] = defaultdict(list)
        for row in last.values():
            if row[STARTED] >= since_key:
                by_job[row[JOB]].append(row)
        for job_key, job_runs in by_job.items():
            top = max(job_runs, key=get_start_and_id)
            tally = tallies.get(job_key)
            if tally is None:
                tally = tallies[job_key] = _Tally(top, block)
            elif get_start_and_id(top) > get_start_and_id(tally.newest):
                tally.newest, tally.block = top, block
            tally.counts.update(map(get_status, job_runs))
            tally.durations += filterfalse(b"null".__eq__, map(get_duration, job_runs))
    result: dict[str, JobStats] = {}
    for job_key, tally in tallies.items():
        counts = tally.counts
        runs = counts.total()
        # Skipped runs never ran and an operator's cancel says nothing of the job.
        judged = runs - counts[b"skipped"] - counts[b"cancelled"]
        # Digits without leading zeros sort by value as (length, text), which spares
        # converting every duration to int.
        tally.durations.sort()
        tally.durations.sort(key=len)
        line = tally.block.line_of(tally.newest)
        last_run = parse_line(line) if line is not None else None
        job = unraw(job_key)
        result[job] = JobStats(
            job=job,
            runs=runs,
            counts={status: counts[status.encode()] for status in _FINAL_ORDER},
            success_rate=counts[b"success"] / judged if judged else None,
            p50_ms=_nearest_rank(tally.durations, 50),
            p95_ms=_nearest_rank(tally.durations, 95),
            last_run=last_run or row_record(tally.newest),
        )
    return result


def prune(directory: Path, keep_days: int, today: date) -> list[Path]:
    """Delete segments of days before `today - keep_days`; returns what was deleted."""
    cutoff = today - timedelta(days=keep_days)
    deleted = []
    for day, path in segments(directory):
        if day < cutoff:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted.append(path)
    return deleted
