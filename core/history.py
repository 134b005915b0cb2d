"""Execution history: daily JSONL segments in Logs/history/, folded by run id."""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

STATUSES = ("running", "success", "failure", "timeout", "skipped", "cancelled", "interrupted")
FINAL_STATUSES = frozenset(STATUSES) - {"running"}
TRIGGERS = ("schedule", "file", "after", "manual", "retry", "catch_up")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with millisecond precision, so strings sort as times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass
class RunRecord:
    id: str
    job: str
    project: str
    started_at: datetime
    status: str
    trigger: str
    host: str
    completed_at: datetime | None = None
    duration_ms: int | None = None
    error: str | None = None
    cron: str | None = None
    attempt: int = 1
    exit_code: int | None = None
    files: list[str] = field(default_factory=list)

    @property
    def written_at(self) -> datetime:
        """When this line was written: the end for a final line, the start for a running one."""
        return self.completed_at or self.started_at

    def to_json(self) -> dict:
        # Field order is part of the format: readers may find fields by position.
        return {
            "id": self.id,
            "taskId": self.job,
            "taskName": self.job,
            "project": self.project,
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
            "status": self.status,
            "duration": self.duration_ms,
            "error": self.error,
            "cronExpression": self.cron,
            "worktreeBranch": None,
            "trigger": self.trigger,
            "attempt": self.attempt,
            "exitCode": self.exit_code,
            "files": self.files,
            "host": self.host,
        }

    def to_line(self) -> bytes:
        return (
            json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode()

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        return cls(
            id=data["id"],
            job=data["taskId"],
            project=data.get("project") or "",
            started_at=parse_iso(data["startedAt"]),
            completed_at=parse_iso(data.get("completedAt")),
            status=data["status"],
            duration_ms=data.get("duration"),
            error=data.get("error"),
            cron=data.get("cronExpression"),
            trigger=data.get("trigger") or "manual",
            attempt=data.get("attempt") or 1,
            exit_code=data.get("exitCode"),
            files=list(data.get("files") or []),
            host=data.get("host") or "",
        )


# --- writing -----------------------------------------------------------------------------

SEGMENT_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")


def segment_path(directory: Path, day: date) -> Path:
    return directory / f"{day.isoformat()}.jsonl"


class HistoryWriter:
    """Appends run lines to the segment of each line's UTC write day.

    Each line goes out in one write() on an O_APPEND descriptor, so a reader (or jq) sees
    whole lines or, after a crash mid-write, one torn line that readers skip.
    """

    def __init__(self, directory: Path, on_error: Callable[[OSError], None] | None = None) -> None:
        self.directory = directory
        self._on_error = on_error
        self._fd: int | None = None
        self._day: date | None = None
        # The runner may finish runs on several threads; the descriptor switch must not race.
        self._lock = threading.Lock()

    def append(self, record: RunRecord) -> None:
        line = record.to_line()
        day = record.written_at.astimezone(UTC).date()
        try:
            with self._lock:
                try:
                    if self._fd is None or day != self._day:
                        self._open(day)
                    written = os.write(self._fd, line)
                    # Short writes only happen on a full disk; finishing the line keeps it whole
                    # if space comes back, and an error here reopens (and newline-fixes) next time.
                    while written < len(line):
                        written += os.write(self._fd, line[written:])
                except OSError:
                    self._close_fd()
                    raise
        except OSError as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)  # outside the lock: the handler may log, or even append again

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _open(self, day: date) -> None:
        self._close_fd()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(segment_path(self.directory, day), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A crash mid-write left a torn line: end it, so our first line stays parseable.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        self._fd, self._day = fd, day

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._day = self._fd, None, None
            os.close(fd)


# --- reading -----------------------------------------------------------------------------


@dataclass
class Query:
    job: str | None = None
    status: str | None = None  # one of STATUSES
    since: datetime | None = None  # runs STARTED at/after this
    limit: int = 50


@dataclass
class QueryResult:
    records: list[RunRecord]  # newest first by started_at
    bad_lines: int  # torn / garbage lines skipped while reading


@dataclass
class JobStats:
    job: str
    runs: int  # runs with a final record
    counts: dict[str, int]  # every final status -> runs ending so
    success_rate: float | None  # success / (runs - skipped); None when nothing ran
    p50_ms: int | None  # nearest-rank, over the runs that have a duration
    p95_ms: int | None
    last_run: RunRecord | None  # the newest final run by started_at (None if its line is broken)


# Runs that end close together may be written a hair out of order (and clocks step), so a
# reader keeps reading this far past the write time at which it may stop.
WRITE_SLACK = timedelta(minutes=5)
_FIRST_BLOCK = 32 * 1024  # "last 50" fits in one block; later blocks double up to _MAX_BLOCK
_MAX_BLOCK = 1024 * 1024

# A line exactly as RunRecord.to_line writes it, fields found by position. Values with
# escapes or times not in iso()'s form fall to json.loads, so hand-written lines still work;
# canonical times compare correctly as bytes.
_TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
_FAST_LINE = re.compile(
    rb'^(\{"id":"([^"\\\n]*)","taskId":"([^"\\\n]*)","taskName":"[^"\\\n]*",'
    rb'"project":"[^"\\\n]*","startedAt":"(' + _TIME + rb')",'
    rb'"completedAt":(?:"(' + _TIME + rb')"|null),'
    rb'"status":"(' + "|".join(STATUSES).encode() + rb')","duration":(\d+|null),[^\n]*\})\n',
    re.MULTILINE,
)

# (line, id, job, startedAt, completedAt or b"", status, duration or b"null"), as bytes.
Row = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]
_LINE, _ID, _JOB, _STARTED, _COMPLETED, _STATUS, _DURATION = range(7)


def _stamp(moment: datetime) -> bytes:
    return iso(moment).encode()


def _written(row: Row) -> bytes:
    return row[_COMPLETED] or row[_STARTED]


def _record(data: object) -> RunRecord | None:
    """A RunRecord from one parsed line, or None when the line is not a run record."""
    if not isinstance(data, dict):
        return None
    try:
        record = RunRecord.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not (
        isinstance(record.id, str)
        and isinstance(record.job, str)
        and record.status in STATUSES
        and isinstance(record.started_at, datetime)
    ):
        return None
    # Hand-written times without an offset are read as UTC, so every record compares.
    if record.started_at.tzinfo is None:
        record.started_at = record.started_at.replace(tzinfo=UTC)
    if record.completed_at is not None and record.completed_at.tzinfo is None:
        record.completed_at = record.completed_at.replace(tzinfo=UTC)
    return record


def _parse_line(line: bytes) -> RunRecord | None:
    try:
        return _record(json.loads(line))
    except ValueError:
        return None


def _slow_row(line: bytes) -> Row | None:
    record = _parse_line(line)
    if record is None:
        return None
    duration = record.duration_ms
    has_duration = isinstance(duration, int | float) and not isinstance(duration, bool)
    return (
        line,
        record.id.encode(),
        record.job.encode(),
        _stamp(record.started_at),
        _stamp(record.completed_at) if record.completed_at else b"",
        record.status.encode(),
        str(int(duration)).encode() if has_duration else b"null",
    )


def _segments(directory: Path) -> list[tuple[date, Path]]:
    """History segments, oldest first."""
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.is_file()]
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = SEGMENT_NAME.fullmatch(name)
        if match:
            try:
                found.append((date.fromisoformat(match.group(1)), directory / name))
            except ValueError:
                continue
    return sorted(found)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class _Scan:
    """Rows of the history, newest segment first and each segment from its end.

    Stops once it has handed out a block reaching below `floor` (a write time from
    _stamp); callers raise `floor` while reading when they learn they may stop earlier.
    Lines are in write order, so everything after that block was written earlier still.
    """

    def __init__(self, directory: Path, floor: bytes) -> None:
        self.directory = directory
        self.floor = floor
        self.bad_lines = 0

    def blocks(self) -> Iterator[list[Row]]:
        for day, path in reversed(_segments(self.directory)):
            if _stamp(_day_start(day + timedelta(days=1))) <= self.floor:
                return
            try:
                for chunk in self._chunks(path):
                    rows = self._rows(chunk)
                    if rows:
                        yield rows
                        if _written(rows[0]) < self.floor:
                            return
            except FileNotFoundError:
                continue  # pruned while we were looking

    def _chunks(self, path: Path) -> Iterator[bytes]:
        """Runs of whole lines, read backwards from the end of `path` in growing blocks."""
        with path.open("rb") as file:
            pos = file.seek(0, os.SEEK_END)
            carry = b""  # the end of a line whose start is in the block before
            size = _FIRST_BLOCK
            tail_seen = False
            while pos > 0:
                step = min(size, pos)
                pos -= step
                size = min(size * 2, _MAX_BLOCK)
                file.seek(pos)
                data = file.read(step) + carry
                if not tail_seen:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0 and pos > 0:
                        carry = data
                        continue
                    tail_seen = True
                    if data[cut:].strip():
                        self.bad_lines += 1  # torn: a write that never finished
                    data = data[:cut]
                start = data.find(b"\n") + 1 if pos > 0 else 0
                carry = data[:start]
                if start < len(data):
                    yield data[start:]

    def _rows(self, chunk: bytes) -> list[Row]:
        rows = _FAST_LINE.findall(chunk)
        if len(rows) == chunk.count(b"\n"):
            return rows
        # Some line is not in to_line's exact form: go line by line.
        rows = []
        pos = 0
        while pos < len(chunk):
            end = chunk.index(b"\n", pos) + 1
            match = _FAST_LINE.match(chunk, pos)
            if match and match.end() == end:
                rows.append(match.groups())
            elif chunk[pos:end].strip():
                row = _slow_row(chunk[pos:end])
                if row is None:
                    self.bad_lines += 1
                else:
                    rows.append(row)
            pos = end
        return rows


def _collect(
    directory: Path,
    *,
    write_floor: bytes,
    job: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> QueryResult:
    """Folded runs matching the filters, newest first; reads no further back than needed."""
    if limit is not None and limit <= 0:
        return QueryResult([], 0)
    scan = _Scan(directory, write_floor)
    job_key = job.encode() if job is not None else None
    status_key = status.encode() if status is not None else None
    since_key = _stamp(since) if since is not None else b""
    seen: set[bytes] = set()
    # (startedAt, id, line); a min-heap of the `limit` newest when limited.
    found: list[tuple[bytes, bytes, bytes]] = []
    for rows in scan.blocks():
        for row in reversed(rows):
            run_id = row[_ID]
            if run_id in seen:
                continue  # an earlier line of a run whose last line we already had
            seen.add(run_id)
            if (
                (status_key is not None and row[_STATUS] != status_key)
                or (job_key is not None and row[_JOB] != job_key)
                or row[_STARTED] < since_key
            ):
                continue
            item = (row[_STARTED], run_id, row[_LINE])
            if limit is None or len(found) < limit:
                heapq.heappush(found, item)
            elif item > found[0]:
                heapq.heapreplace(found, item)
        if limit is not None and len(found) == limit:
            # A run started after the limit-th newest start was written after it too; runs
            # end out of start order, so the stop is on write time, never on startedAt.
            oldest = datetime.fromisoformat(found[0][0].decode())
            scan.floor = max(scan.floor, _stamp(oldest - WRITE_SLACK))
    records = []
    for _, _, line in sorted(found, reverse=True):
        record = _parse_line(line)
        if record is None:
            scan.bad_lines += 1  # right shape up front, broken further on
        else:
            records.append(record)
    return QueryResult(records, scan.bad_lines)


def recent(directory: Path, query: Query) -> QueryResult:
    """The newest `query.limit` runs matching the query, newest first by start."""
    return _collect(
        directory,
        write_floor=_stamp(query.since - WRITE_SLACK) if query.since is not None else b"",
        job=query.job,
        status=query.status,
        since=query.since,
        limit=query.limit,
    )


def runs_since(directory: Path, since: datetime) -> QueryResult:
    """Every run started at/after `since`, newest first (the quota window's rebuild)."""
    return _collect(directory, write_floor=_stamp(since - WRITE_SLACK), since=since)


def open_runs(directory: Path, since: datetime) -> list[RunRecord]:
    """Runs whose last line is still `running`, in the segments from `since`'s UTC day on."""
    first_day = since.astimezone(UTC).date()
    return _collect(directory, write_floor=_stamp(_day_start(first_day)), status="running").records


def _nearest_rank(ordered: list[int], percent: int) -> int | None:
    if not ordered:
        return None
    rank = -(-percent * len(ordered) // 100)  # ceil without floats
    return ordered[max(rank, 1) - 1]


def stats(directory: Path, since: datetime) -> dict[str, JobStats]:
    """Per job, over the runs started at/after `since` that have a final record."""
    scan = _Scan(directory, _stamp(since - WRITE_SLACK))
    newest_first = list(scan.blocks())
    # Oldest line first, so the comprehension's last-wins is the fold's last-line-wins.
    last = {row[_ID]: row for rows in reversed(newest_first) for row in rows}
    since_key = _stamp(since)
    by_job: dict[bytes, list[Row]] = {}
    for row in last.values():
        if row[_STATUS] != b"running" and row[_STARTED] >= since_key:
            by_job.setdefault(row[_JOB], []).append(row)
    result: dict[str, JobStats] = {}
    for job_key, rows in by_job.items():
        counts = {status: 0 for status in STATUSES if status in FINAL_STATUSES}
        for row in rows:
            counts[row[_STATUS].decode()] += 1
        durations = sorted(int(row[_DURATION]) for row in rows if row[_DURATION] != b"null")
        ran = len(rows) - counts["skipped"]
        newest = max(rows, key=lambda row: (row[_STARTED], row[_ID]))
        job = job_key.decode()
        result[job] = JobStats(
            job=job,
            runs=len(rows),
            counts=counts,
            success_rate=counts["success"] / ran if ran else None,
            p50_ms=_nearest_rank(durations, 50),
            p95_ms=_nearest_rank(durations, 95),
            last_run=_parse_line(newest[_LINE]),
        )
    return result


def prune(directory: Path, keep_days: int, today: date) -> list[Path]:
    """Delete segments of days before `today - keep_days`; returns what was deleted."""
    cutoff = today - timedelta(days=keep_days)
    deleted = []
    for day, path in _segments(directory):
        if day < cutoff:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted.append(path)
    return deleted
