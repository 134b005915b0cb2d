"""Execution history: daily JSONL segments in Logs/history/, folded by run id."""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import filterfalse, groupby
from operator import itemgetter
from pathlib import Path

STATUSES = ("running", "success", "failure", "timeout", "skipped", "cancelled", "interrupted")
FINAL_STATUSES = frozenset(STATUSES) - {"running"}
# Status is never told by colour alone: every place that shows one shows glyph and word.
GLYPHS = {
    "running": "▶",
    "success": "✔",
    "failure": "✘",
    "timeout": "⧗",
    "skipped": "↷",
    "cancelled": "■",
    "interrupted": "⚡",
}


def status_label(status: str) -> str:
    """Glyph and word, e.g. "✘ failure"."""
    return f"{GLYPHS.get(status, '?')} {status}"


_FINAL_ORDER = tuple(status for status in STATUSES if status in FINAL_STATUSES)
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
        return (_LINE_ENCODER.encode(self.to_json()) + "\n").encode()

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

# json.dumps builds an encoder per call when given options; a busy keeper writes two lines a run.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

SEGMENT_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")


def segment_path(directory: Path, day: date) -> Path:
    return directory / f"{day.isoformat()}.jsonl"


class HistoryWriter:
    """Appends run lines to the segment of each line's UTC write day.

    Lines go out in one write() per segment on an O_APPEND descriptor, so a reader (or jq)
    sees whole lines or, after a crash mid-write, one torn line that readers skip.

    With `defer` set, lines gather until flush(), which `defer` schedules once per batch:
    a busy keeper writes one line per start and one per end, and each write gives up the
    GIL to the spawner threads. A caller that needs a line on disk now calls flush().
    """

    def __init__(self, directory: Path, on_error: Callable[[OSError], None] | None = None) -> None:
        self.directory = directory
        self._on_error = on_error
        self._fd: int | None = None
        self._day: date | None = None
        # The runner may finish runs on several threads; the descriptor switch must not race.
        self._lock = threading.Lock()
        self.defer: Callable[[Callable[[], None]], object] | None = None
        self._pending: list[tuple[date, bytes]] = []

    def append(self, record: RunRecord) -> None:
        line = (record.written_at.astimezone(UTC).date(), record.to_line())
        if self.defer is None:
            self._write([line])
            return
        with self._lock:
            self._pending.append(line)
            first = len(self._pending) == 1
        if first:
            self.defer(self.flush)

    def flush(self) -> None:
        """Write the lines gathered so far."""
        self._write([])

    def _write(self, lines: list[tuple[date, bytes]]) -> None:
        try:
            with self._lock:
                if self._pending:
                    lines, self._pending = self._pending + lines, []
                try:
                    for day, group in groupby(lines, key=itemgetter(0)):
                        self._write_day(day, b"".join(map(itemgetter(1), group)))
                except OSError:
                    self._close_fd()
                    raise
        except OSError as exc:
            self._report(exc)

    def _write_day(self, day: date, data: bytes) -> None:
        if self._fd is None or day != self._day:
            self._open(day)
        assert self._fd is not None
        written = os.write(self._fd, data)
        # Short writes only happen on a full disk; finishing the line keeps it whole if
        # space comes back, and an error here reopens (and newline-fixes) next time.
        while written < len(data):
            written += os.write(self._fd, data[written:])

    def close(self) -> None:
        self.defer = None
        self.flush()
        try:
            with self._lock:
                self._close_fd()
        except OSError as exc:
            self._report(exc)

    def _report(self, exc: OSError) -> None:
        # Called outside the lock: the handler may log, or even append again.
        if self._on_error is None:
            raise exc
        self._on_error(exc)

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
    success_rate: float | None  # success / (runs - skipped); None when nothing ran
    p50_ms: int | None  # nearest-rank, over the runs that have a duration
    p95_ms: int | None
    last_run: RunRecord  # the newest final run by started_at


# Runs that end close together may be written a hair out of order (and clocks step), so a
# reader keeps reading this far past the write time at which it may stop.
WRITE_SLACK = timedelta(minutes=5)
_FIRST_BLOCK = 32 * 1024  # "last 50" fits in one block; later blocks double up to _MAX_BLOCK
_MAX_BLOCK = 1024 * 1024

# iso()'s shape, checked by position only: checking digits too would cost a third more.
_TIME = rb'"(....-..-..T..:..:..\....\+00:00)"'


def _line_pattern(completed: bytes, statuses: Iterable[str]) -> re.Pattern[bytes]:
    """A line exactly as RunRecord.to_line writes it, read up to its duration.

    Fields are found by position; lines that do not fit are read with json.loads instead.
    The pattern starts at the closing brace of the line before, so a hit also vouches that
    that line ended whole, and with a literal, so re jumps between lines at C speed.
    Repeats are possessive (half the cost). Strings are taken raw, still JSON-escaped.
    """
    return re.compile(
        rb'\}\n\{"id":"([^"]*+)","taskId":"([^"]*+)","taskName":"[^"]*+","project":"[^"]*+",'
        rb'"startedAt":'
        + _TIME
        + rb',"completedAt":'
        + completed
        + rb',"status":"('
        + "|".join(statuses).encode()
        + rb')","duration":(0|[1-9]\d*+|null),'
    )


_ANY_LINE = _line_pattern(rb"(?:" + _TIME + rb"|null)", STATUSES)
_FINAL_LINE = _line_pattern(_TIME, sorted(FINAL_STATUSES))
_RUNNING_MARK = b'"completedAt":null,"status":"running"'

# (id, job, startedAt, completedAt or b"", status, duration or b"null"[, line]) as bytes, id
# and job raw as in the file. Rows read by json.loads carry their line; the others find it
# again by id when needed, as cutting out every line would cost more than the whole query.
Row = tuple[bytes, ...]
_ID, _JOB, _STARTED, _COMPLETED, _STATUS, _DURATION, _OWN_LINE = range(7)
_get_id, _get_status, _get_duration = itemgetter(_ID), itemgetter(_STATUS), itemgetter(_DURATION)
_get_start_and_id = itemgetter(_STARTED, _ID)  # the order of "newest first"


def _stamp(moment: datetime) -> bytes:
    return iso(moment).encode()


def _raw(text: str) -> bytes:
    """A string as to_line writes it between its quotes."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def _unraw(raw: bytes) -> str:
    return json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()


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
    # Stats sort durations as digit strings, so only whole non-negative ones are kept.
    has_duration = (
        isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0
    )
    return (
        _raw(record.id),
        _raw(record.job),
        _stamp(record.started_at),
        _stamp(record.completed_at) if record.completed_at else b"",
        record.status.encode(),
        str(int(duration)).encode() if has_duration else b"null",
        line,
    )


def _row_record(row: Row) -> RunRecord:
    """The fields a row holds, for a line that had the right shape but broke further on."""
    return RunRecord.from_json(
        {
            "id": _unraw(row[_ID]),
            "taskId": _unraw(row[_JOB]),
            "startedAt": row[_STARTED].decode(),
            "completedAt": row[_COMPLETED].decode() or None,
            "status": row[_STATUS].decode(),
            "duration": None if row[_DURATION] == b"null" else int(row[_DURATION]),
        }
    )


_ID_PREFIX = b'{"id":"'


@dataclass
class _Block:
    """Whole lines of a segment: buf[start] is the newline before the first of them, and
    buf[start - 1] the last byte of the line before that; buf[stop - 1] ends the last."""

    buf: bytes
    start: int
    stop: int
    _last_lines: dict[bytes, bytes] | None = field(default=None, repr=False)

    def find(self, pattern: re.Pattern[bytes]) -> list[Row]:
        return pattern.findall(self.buf, self.start - 1, self.stop)

    def holds_only(self, understood: int) -> bool:
        """Whether `understood` hits, each on a line of its own, account for every line.

        Each hit also vouched that the line before it ended with a brace, as does this
        check for the last line; so no line can be torn.
        """
        return understood == self.buf.count(b"\n", self.start, self.stop) - 1 and (
            self.buf.endswith(b"}\n", self.start, self.stop)
        )

    def lines(self) -> Iterator[bytes]:
        for line in self.buf[self.start + 1 : self.stop].split(b"\n")[:-1]:
            if line.strip():
                yield line

    def line_of(self, row: Row) -> bytes | None:
        """The last line of run `row` in this block, if the block has one."""
        if len(row) > _OWN_LINE:
            return row[_OWN_LINE]
        if self._last_lines is None:
            # One pass over the block instead of a search per row: an unlimited query
            # asks for every run of every block.
            self._last_lines = {}
            for line in self.lines():
                if line.startswith(_ID_PREFIX):
                    end = line.find(b'"', len(_ID_PREFIX))
                    self._last_lines[line[len(_ID_PREFIX) : end]] = line
        line = self._last_lines.get(row[_ID])
        if line is not None:
            return line
        pos = self.buf.rfind(b'\n{"id":"' + row[_ID] + b'","taskId":"', self.start, self.stop)
        if pos < 0:
            return None
        return self.buf[pos + 1 : self.buf.index(b"\n", pos + 1)]

    def first_written(self) -> bytes | None:
        """Write time of the first readable line, which is the oldest in the block."""
        match = _ANY_LINE.match(self.buf, self.start - 1)
        if match:
            return match[4] or match[3]
        for line in self.lines():
            record = _parse_line(line)
            if record is not None:
                return _stamp(record.written_at)
        return None


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
            with contextlib.suppress(ValueError):
                found.append((date.fromisoformat(match.group(1)), directory / name))
    return sorted(found)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class _Scan:
    """The history in blocks, newest segment first and each segment from its end.

    Stops after a block whose oldest line was written before `floor` (a _stamp); callers
    raise `floor` while reading when they learn they may stop sooner. Lines are in write
    order, so everything not yet read was written before that block.
    """

    def __init__(self, directory: Path, floor: bytes) -> None:
        self.directory = directory
        self.floor = floor
        self.bad_lines = 0

    def blocks(self) -> Iterator[_Block]:
        for day, path in reversed(_segments(self.directory)):
            if _stamp(_day_start(day + timedelta(days=1))) <= self.floor:
                return
            try:
                for block in self._read_backwards(path):
                    yield block
                    written = block.first_written()
                    if written is not None and written < self.floor:
                        return
            except FileNotFoundError:
                continue  # pruned while we were looking

    def _read_backwards(self, path: Path) -> Iterator[_Block]:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            size = _FIRST_BLOCK
            at_tail = True
            while end > 0:
                pos = max(0, end - size)
                file.seek(pos)
                buf = file.read(end - pos)
                stop = len(buf)
                if at_tail:
                    stop = buf.rfind(b"\n") + 1
                    if stop == 0 and pos > 0:
                        size *= 2  # one line longer than the block: read more of it
                        continue
                    at_tail = False
                    if buf[stop:].strip():
                        self.bad_lines += 1  # torn: a write that never finished
                    end = pos + stop
                if pos == 0:
                    if stop:  # the brace stands in for the end of a line before the first
                        yield _Block(b"}\n" + buf[:stop], 1, stop + 2)
                    return
                # The line that `pos` cut is read whole with the next block.
                start = buf.find(b"\n", 1, stop)
                if start < 0 or start == stop - 1:
                    size *= 2  # no whole line in this block
                    continue
                yield _Block(buf, start, stop)
                end = pos + start + 1
                size = max(size, min(size * 2, _MAX_BLOCK))

    def rows(self, block: _Block) -> list[Row]:
        """Every line of `block`, oldest first."""
        rows = block.find(_ANY_LINE)
        return rows if block.holds_only(len(rows)) else self._slow_rows(block)

    def final_rows(self, block: _Block) -> list[Row]:
        """The lines of `block` with a final status, oldest first.

        Running lines are only counted, not read; their ends go unchecked unless a final
        line follows, so a final line cut short after its duration and followed by a
        running line still counts here: its status and duration are whole.
        """
        rows = block.find(_FINAL_LINE)
        running = block.buf.count(_RUNNING_MARK, block.start, block.stop)
        if block.holds_only(len(rows) + running):
            return rows
        return [row for row in self._slow_rows(block) if row[_STATUS] != b"running"]

    def _slow_rows(self, block: _Block) -> list[Row]:
        rows = []
        for line in block.lines():
            row = _slow_row(line)
            if row is None:
                self.bad_lines += 1
            else:
                rows.append(row)
        return rows


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
    scan = _Scan(directory, floor)
    job_key = _raw(job) if job is not None else None
    # The whole field, so a short job name is not found inside every other line.
    job_needle = b'"taskId":"' + job_key + b'"' if job_key is not None else None
    status_key = status.encode() if status is not None else None
    since_key = _stamp(since) if since is not None else b""
    seen: set[bytes] = set()
    # (startedAt, id, row, block): a min-heap holding the `limit` newest when limited.
    found: list[tuple[bytes, bytes, Row, _Block]] = []
    for block in scan.blocks():
        # All lines of a run name its job, so a block without the name holds nothing that
        # folds into the answer: a rarely run job is found without parsing the rest.
        if job_needle is not None and block.buf.find(job_needle, block.start, block.stop) < 0:
            continue
        for row in reversed(scan.rows(block)):
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
            item = (row[_STARTED], run_id, row, block)
            if limit is None or len(found) < limit:
                heapq.heappush(found, item)
            elif item[:2] > found[0][:2]:
                heapq.heapreplace(found, item)
        if limit is not None and len(found) == limit:
            # Any run started after the limit-th newest start was written after it too. Runs
            # end out of start order, so the stop is on write time, never on startedAt.
            oldest = datetime.fromisoformat(found[0][0].decode())
            scan.floor = max(scan.floor, _stamp(oldest - WRITE_SLACK))
    records = []
    for _, _, row, block in sorted(found, key=lambda item: item[:2], reverse=True):
        line = block.line_of(row)
        record = _parse_line(line) if line is not None else None
        if record is None:
            scan.bad_lines += 1  # the right shape up front, broken further on
        else:
            records.append(record)
    return QueryResult(records, scan.bad_lines)


def recent(directory: Path, query: Query) -> QueryResult:
    """The newest `query.limit` runs matching the query, newest first by start."""
    return _collect(
        directory,
        floor=_stamp(query.since - WRITE_SLACK) if query.since is not None else b"",
        job=query.job,
        status=query.status,
        since=query.since,
        limit=query.limit,
    )


def runs_since(directory: Path, since: datetime) -> QueryResult:
    """Every run started at/after `since`, newest first (the quota window's rebuild)."""
    return _collect(directory, floor=_stamp(since - WRITE_SLACK), since=since)


def open_runs(directory: Path, since: datetime) -> list[RunRecord]:
    """Runs whose last line is still `running`, in the segments from `since`'s UTC day on."""
    first_day = since.astimezone(UTC).date()
    return _collect(directory, floor=_stamp(_day_start(first_day)), status="running").records


def _nearest_rank(ordered: list[bytes], percent: int) -> int | None:
    if not ordered:
        return None
    rank = -(-percent * len(ordered) // 100)  # ceil without floats
    return int(ordered[max(rank, 1) - 1])


@dataclass
class _Tally:
    """One job's runs so far; `newest` keeps its block alive to cut out the line at the end."""

    newest: Row
    block: _Block
    counts: Counter[bytes] = field(default_factory=Counter)
    durations: list[bytes] = field(default_factory=list)  # digits, as in the file


def stats(directory: Path, since: datetime) -> dict[str, JobStats]:
    """Per job, over the runs started at/after `since` that have a final line.

    Only final lines are read: a run's final line is its last (running comes first), so
    folding the final lines alone by id gives the same runs at half the cost. Each block
    is tallied while its rows are fresh in the CPU cache, with the per-run work in C
    where it can be: a day holds some 35k runs.
    """
    scan = _Scan(directory, _stamp(since - WRITE_SLACK))
    since_key = _stamp(since)
    seen: set[bytes] = set()
    tallies: dict[bytes, _Tally] = {}
    for block in scan.blocks():
        rows = scan.final_rows(block)
        last = dict(zip(map(_get_id, rows), rows, strict=True))  # the block's last line wins
        for run_id in seen.intersection(last):
            del last[run_id]  # a newer block had this run's last line
        seen.update(last)
        by_job: dict[bytes, list[Row]] = defaultdict(list)
        for row in last.values():
            if row[_STARTED] >= since_key:
                by_job[row[_JOB]].append(row)
        for job_key, runs in by_job.items():
            top = max(runs, key=_get_start_and_id)
            tally = tallies.get(job_key)
            if tally is None:
                tally = tallies[job_key] = _Tally(top, block)
            elif _get_start_and_id(top) > _get_start_and_id(tally.newest):
                tally.newest, tally.block = top, block
            tally.counts.update(map(_get_status, runs))
            tally.durations += filterfalse(b"null".__eq__, map(_get_duration, runs))
    result: dict[str, JobStats] = {}
    for job_key, tally in tallies.items():
        counts = tally.counts
        runs = counts.total()
        ran = runs - counts[b"skipped"]
        # Digits without leading zeros sort by value as (length, text), which spares
        # converting every duration to int.
        tally.durations.sort()
        tally.durations.sort(key=len)
        line = tally.block.line_of(tally.newest)
        last_run = _parse_line(line) if line is not None else None
        job = _unraw(job_key)
        result[job] = JobStats(
            job=job,
            runs=runs,
            counts={status: counts[status.encode()] for status in _FINAL_ORDER},
            success_rate=counts[b"success"] / ran if ran else None,
            p50_ms=_nearest_rank(tally.durations, 50),
            p95_ms=_nearest_rank(tally.durations, 95),
            last_run=last_run or _row_record(tally.newest),
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
