"""Reading the history backwards in blocks, with the fast path that finds a line's
fields by position (lines exactly as RunRecord.to_line writes them) and json.loads for
the rest."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path

from watchkeeper.core.history_format import FINAL_STATUSES, SEGMENT_NAME, STATUSES, RunRecord, iso

FIRST_BLOCK = 32 * 1024  # "last 50" fits in one block; later blocks double up to MAX_BLOCK
MAX_BLOCK = 1024 * 1024

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
ID, JOB, STARTED, COMPLETED, STATUS, DURATION, OWN_LINE = range(7)
get_id, get_status, get_duration = itemgetter(ID), itemgetter(STATUS), itemgetter(DURATION)
get_start_and_id = itemgetter(STARTED, ID)  # the order of "newest first"


def stamp(moment: datetime) -> bytes:
    return iso(moment).encode()


def raw(text: str) -> bytes:
    """A string as to_line writes it between its quotes."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def unraw(raw: bytes) -> str:
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


def parse_line(line: bytes) -> RunRecord | None:
    try:
        return _record(json.loads(line))
    except ValueError:
        return None


def _slow_row(line: bytes) -> Row | None:
    record = parse_line(line)
    if record is None:
        return None
    duration: object = record.duration_ms
    # Stats sort durations as digit strings, so only whole non-negative ones are kept.
    digits = b"null"
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0:
        digits = str(int(duration)).encode()
    return (
        raw(record.id),
        raw(record.job),
        stamp(record.started_at),
        stamp(record.completed_at) if record.completed_at else b"",
        record.status.encode(),
        digits,
        line,
    )


def row_record(row: Row) -> RunRecord:
    """The fields a row holds, for a line that had the right shape but broke further on."""
    return RunRecord.from_json(
        {
            "id": unraw(row[ID]),
            "taskId": unraw(row[JOB]),
            "startedAt": row[STARTED].decode(),
            "completedAt": row[COMPLETED].decode() or None,
            "status": row[STATUS].decode(),
            "duration": None if row[DURATION] == b"null" else int(row[DURATION]),
        }
    )


_ID_PREFIX = b'{"id":"'


@dataclass
class Block:
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
        if len(row) > OWN_LINE:
            return row[OWN_LINE]
        if self._last_lines is None:
            # One pass over the block instead of a search per row: an unlimited query
            # asks for every run of every block.
            self._last_lines = {}
            for line in self.lines():
                if line.startswith(_ID_PREFIX):
                    end = line.find(b'"', len(_ID_PREFIX))
                    self._last_lines[line[len(_ID_PREFIX) : end]] = line
        found = self._last_lines.get(row[ID])
        if found is not None:
            return found
        pos = self.buf.rfind(b'\n{"id":"' + row[ID] + b'","taskId":"', self.start, self.stop)
        if pos < 0:
            return None
        return self.buf[pos + 1 : self.buf.index(b"\n", pos + 1)]

    def first_written(self) -> bytes | None:
        """Write time of the first readable line, which is the oldest in the block."""
        match = _ANY_LINE.match(self.buf, self.start - 1)
        if match:
            return match[4] or match[3]
        for line in self.lines():
            record = parse_line(line)
            if record is not None:
                return stamp(record.written_at)
        return None


def segments(directory: Path) -> list[tuple[date, Path]]:
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


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Scan:
    """The history in blocks, newest segment first and each segment from its end.

    Stops after a block whose oldest line was written before `floor` (a stamp); callers
    raise `floor` while reading when they learn they may stop sooner. Lines are in write
    order, so everything not yet read was written before that block.
    """

    def __init__(self, directory: Path, floor: bytes) -> None:
        self.directory = directory
        self.floor = floor
        self.bad_lines = 0

    def blocks(self) -> Iterator[Block]:
        for day, path in reversed(segments(self.directory)):
            if stamp(day_start(day + timedelta(days=1))) <= self.floor:
                return
            try:
                for block in self._read_backwards(path):
                    yield block
                    written = block.first_written()
                    if written is not None and written < self.floor:
                        return
            except FileNotFoundError:
                continue  # pruned while we were looking

    def _read_backwards(self, path: Path) -> Iterator[Block]:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            size = FIRST_BLOCK
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
                        yield Block(b"}\n" + buf[:stop], 1, stop + 2)
                    return
                # The line that `pos` cut is read whole with the next block.
                start = buf.find(b"\n", 1, stop)
                if start < 0 or start == stop - 1:
                    size *= 2  # no whole line in this block
                    continue
                yield Block(buf, start, stop)
                end = pos + start + 1
                size = max(size, min(size * 2, MAX_BLOCK))

    def rows(self, block: Block) -> list[Row]:
        """Every line of `block`, oldest first."""
        rows = block.find(_ANY_LINE)
        return rows if block.holds_only(len(rows)) else self._slow_rows(block)

    def final_rows(self, block: Block) -> list[Row]:
        """The lines of `block` with a final status, oldest first.

        Running lines are only counted, not read; their ends go unchecked unless a final
        line follows, so a final line cut short after its duration and followed by a
        running line still counts here: its status and duration are whole.
        """
        rows = block.find(_FINAL_LINE)
        running = block.buf.count(_RUNNING_MARK, block.start, block.stop)
        if block.holds_only(len(rows) + running):
            return rows
        return [row for row in self._slow_rows(block) if row[STATUS] != b"running"]

    def _slow_rows(self, block: Block) -> list[Row]:
        rows = []
        for line in block.lines():
            row = _slow_row(line)
            if row is None:
                self.bad_lines += 1
            else:
                rows.append(row)
        return rows
