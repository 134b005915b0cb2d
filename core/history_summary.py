"""What `--status` (and a starting keeper) needs of the history, without reading a day of
it each time: per segment, how many runs ended with each final status by the quarter
hour (UTC) they started in, and where each job's newest finished run is written.

Segments only grow, so a summary remembers how far it read each one: bringing it up to
date reads only what was written since. A segment that shrank, was replaced (another
inode) or rewritten (changed without growing, or the bytes before the summary's end
differ) is read again from its start.
The summaries are kept in Logs/history/.summary.json; where this user may not write that
(a group reading another user's Logs/), they are worked out afresh on each call, and are
as right.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from watchkeeper.core.history_format import segment_path
from watchkeeper.core.history_scan import (
    ID,
    JOB,
    STARTED,
    STATUS,
    Block,
    Row,
    Scan,
    segments,
    unraw,
)

SUMMARY_NAME = ".summary.json"
VERSION = 1
CHUNK = 8 * 1024 * 1024  # read this much of a segment at a time
MARK = 64  # the bytes before a summary's end, checked to tell a rewritten segment


@dataclass
class SegmentSummary:
    """One history segment, summarised as far as `size`."""

    inode: int
    size: int  # bytes summarised: whole lines, from the start of the segment
    mark: str  # the MARK bytes before `size` (latin-1), as they were
    mtime_ns: int  # the segment's, when it was `size` long or more
    # "YYYY-MM-DDTHH:MM", the UTC quarter hour a run started in -> final status -> runs
    quarters: dict[str, dict[str, int]] = field(default_factory=dict)
    # job -> [startedAt, run id, offset, length]: its newest finished run's final line
    newest: dict[str, list[str | int]] = field(default_factory=dict)
    bad_lines: int = 0


def quarter_of(stamp: str) -> str:
    """The quarter-hour key of an ISO stamp in UTC ("2026-12-06T09:47:..." -> "...T09:45")."""
    return f"{stamp[:14]}{int(stamp[14:16]) // 15 * 15:02d}"


class HistorySummary:
    """The summaries of the segments from `keep_from` (a UTC date) on, as last saved;
    `update` brings those from a day on up to date, and only those are answered from."""

    def __init__(self, directory: Path, keep_from: date) -> None:
        self.directory = directory
        self.keep_from = keep_from
        saved = _load(directory / SUMMARY_NAME)
        self.segments = {day: s for day, s in saved.items() if day >= keep_from}
        self._current: set[date] = set()
        self._torn: dict[date, int] = {}
        self._changed = False

    def update(self, first_day: date) -> None:
        for day, path in segments(self.directory):
            if day < max(first_day, self.keep_from) or day in self._current:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # pruned while we looked
            try:
                known = self.segments.get(day)
                summary, self._torn[day] = _bring_up_to_date(self.directory, fd, known)
            finally:
                os.close(fd)
            self._changed |= summary is not known or self._torn[day] >= 0
            self.segments[day] = summary
            self._current.add(day)

    def ended_since(self, quarter: str) -> Counter[str]:
        """Runs by final status that started in `quarter` (a quarter key) or later."""
        counts: Counter[str] = Counter()
        for day in self._current:
            for key, statuses in self.segments[day].quarters.items():
                if key >= quarter:
                    counts.update(statuses)
        return counts

    def newest(self, job: str, since: str) -> bytes | None:
        """The final line of the newest finished run of `job` started at/after `since` (a
        stamp); None when there is none, or when it cannot be read any more."""
        best: tuple[str, str, date, int, int] | None = None
        for day in self._current:
            found = self.segments[day].newest.get(job)
            if found is None:
                continue
            started, run_id, offset, length = found
            assert isinstance(started, str) and isinstance(run_id, str)
            assert isinstance(offset, int) and isinstance(length, int)
            if started >= since and (best is None or (started, run_id) > best[:2]):
                best = (started, run_id, day, offset, length)
        if best is None:
            return None
        try:
            with segment_path(self.directory, best[2]).open("rb") as file:
                file.seek(best[3])
                return file.read(best[4])
        except FileNotFoundError:
            return None

    def bad_lines(self, first_day: date) -> int:
        """Unreadable lines in the segments of `first_day` on, counting one being written."""
        return sum(
            self.segments[day].bad_lines + max(self._torn.get(day, 0), 0)
            for day in self._current
            if day >= first_day
        )

    def save(self) -> None:
        if not self._changed:
            return
        from watchkeeper.core.logsdir import write_file

        data = {
            "version": VERSION,
            "segments": {day.isoformat(): asdict(s) for day, s in sorted(self.segments.items())},
        }
        # Another user's Logs/ (read through a group), or a full disk: worked out again.
        with contextlib.suppress(OSError):
            write_file(self.directory / SUMMARY_NAME, json.dumps(data, separators=(",", ":")))


def _mark(fd: int, end: int) -> str:
    length = min(MARK, end)
    return os.pread(fd, length, end - length).decode("latin-1")


def _bring_up_to_date(
    directory: Path, fd: int, known: SegmentSummary | None
) -> tuple[SegmentSummary, int]:
    """The summary of one segment (`known` itself when nothing was written since) and
    whether its end is a line being written (1, or 0; -1 when nothing was read)."""
    info = os.fstat(fd)
    if (
        known is not None
        and known.inode == info.st_ino
        and (known.size < info.st_size or known.mtime_ns == info.st_mtime_ns)
        and known.size <= info.st_size
        and _mark(fd, known.size) == known.mark
    ):
        if known.size == info.st_size:
            return known, -1
        summary = known
    else:
        summary = SegmentSummary(info.st_ino, 0, "", info.st_mtime_ns)
    scan = Scan(directory, b"")
    ended: Counter[tuple[str, str]] = Counter()
    torn = 0
    while summary.size < info.st_size:
        at = summary.size
        buf = os.pread(fd, min(CHUNK, info.st_size - at), at)
        stop = buf.rfind(b"\n") + 1
        if stop == 0 and at + len(buf) < info.st_size:
            buf += os.pread(fd, info.st_size - at - len(buf), at + len(buf))  # a huge line
            stop = buf.rfind(b"\n") + 1
        if at + len(buf) == info.st_size and buf[stop:].strip():
            torn = 1  # being written, or cut off by a crash: read again next time
        if stop == 0:
            break
        # The brace stands in for the end of a line before the first (see Block).
        block = Block(b"}\n" + buf[:stop], 1, stop + 2)
        newest: dict[bytes, Row] = {}
        for row in scan.final_rows(block):
            ended[quarter_of(row[STARTED].decode()), row[STATUS].decode()] += 1
            best = newest.get(row[JOB])
            if best is None or (row[STARTED], row[ID]) > (best[STARTED], best[ID]):
                newest[row[JOB]] = row
        for job_raw, row in newest.items():
            job, started, run_id = unraw(job_raw), row[STARTED].decode(), row[ID].decode()
            old = summary.newest.get(job)
            if old is not None and (started, run_id) <= (old[0], old[1]):
                continue
            # A run's final line is the last line of its id (its running line comes first).
            pos = block.buf.rfind(b'\n{"id":"' + row[ID] + b'"', block.start, block.stop)
            if pos >= 0:
                end = block.buf.index(b"\n", pos + 1)
                summary.newest[job] = [started, run_id, at + pos - 1, end - pos - 1]
        summary.size = at + stop
    for (quarter, status), runs in ended.items():
        counts = summary.quarters.setdefault(quarter, {})
        counts[status] = counts.get(status, 0) + runs
    summary.bad_lines += scan.bad_lines
    summary.mark = _mark(fd, summary.size)
    summary.mtime_ns = info.st_mtime_ns
    return summary, torn


def _load(path: Path) -> dict[date, SegmentSummary]:
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") != VERSION:
            return {}
        return {
            date.fromisoformat(day): SegmentSummary(**fields)
            for day, fields in data["segments"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # none yet, unreadable or of another version: summarised afresh
