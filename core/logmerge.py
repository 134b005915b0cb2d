"""Every log of a vault in one stream, in time order (`logs --all [-f]`): the keeper log
and each job's output log, each line labelled with where it came from.

Each of our log lines starts with an ISO stamp; a line without one (a torn or foreign
line) sorts with the line before it in its file.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from watchkeeper.core.logs import rotated_name
from watchkeeper.core.tail import last_lines

KEEPER_SOURCE = "(keeper)"  # parentheses: no job can be named so
KEEPER_LOG = "watchkeeper.log"


@dataclass(frozen=True)
class LogLine:
    moment: float
    source: str
    text: str

    def render(self, width: int = 0) -> str:
        stamp, _, rest = self.text.partition(" ")
        if not _stamp(stamp):
            return f"{'':29} {self.source:<{width}} {self.text}"
        return f"{stamp} {self.source:<{width}} {rest}"


def _stamp(token: str) -> float | None:
    if len(token) < 19 or token[10:11] != "T":
        return None
    try:
        return datetime.fromisoformat(token).timestamp()
    except ValueError:
        return None


def _stamped(source: str, texts: list[str], previous: float = 0.0) -> list[LogLine]:
    lines = []
    for text in texts:
        moment = _stamp(text.partition(" ")[0])
        previous = moment if moment is not None else previous
        lines.append(LogLine(previous, source, text))
    return lines


def log_sources(logs_dir: Path) -> dict[str, Path]:
    """The keeper log and every job log in `logs_dir` (jobs no longer configured too)."""
    sources = {KEEPER_SOURCE: logs_dir / KEEPER_LOG}
    try:
        names = sorted(entry.name for entry in os.scandir(logs_dir / "jobs"))
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(".log"):
            sources[name.removesuffix(".log")] = logs_dir / "jobs" / name
    return sources


def merged_tail(sources: dict[str, Path], count: int) -> list[LogLine]:
    """The last `count` lines over all sources (rotated backups included), oldest first."""
    per_source = [_stamped(name, last_lines(path, count)) for name, path in sources.items()]
    merged = list(heapq.merge(*per_source, key=lambda line: line.moment))
    return merged[-count:] if count else []


@dataclass
class _Cursor:
    inode: int
    position: int
    pending: bytes = b""
    moment: float = 0.0


class LogsFollower:
    """Lines appended to any of the logs since the last poll. A log renamed away by
    rotation is read to its end (as `path.1`) before its successor; a log that appears
    later (a job's first output) is read from its start."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._cursors: dict[str, _Cursor] = {}
        for name, path in log_sources(logs_dir).items():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            self._cursors[name] = _Cursor(stat.st_ino, stat.st_size)

    def poll(self) -> list[LogLine]:
        lines: list[LogLine] = []
        for name, path in log_sources(self.logs_dir).items():
            lines.extend(self._read(name, path))
        # Files are polled one after another: order what this poll found by time.
        lines.sort(key=lambda line: line.moment)
        return lines

    def _read(self, name: str, path: Path) -> list[LogLine]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []  # between rotation's rename and the new file: next poll
        cursor = self._cursors.get(name)
        texts: list[str] = []
        moment = cursor.moment if cursor is not None else 0.0
        if cursor is not None and cursor.inode != stat.st_ino:
            backup = rotated_name(path, 1)
            try:
                if backup.stat().st_ino == cursor.inode:
                    texts += self._take(cursor, backup, final=True)
            except FileNotFoundError:
                pass
            cursor = None
        if cursor is None:
            cursor = self._cursors[name] = _Cursor(stat.st_ino, 0, moment=moment)
        elif stat.st_size < cursor.position:
            cursor.position, cursor.pending = 0, b""  # truncated in place
        texts += self._take(cursor, path)
        lines = _stamped(name, texts, moment)
        if lines:
            cursor.moment = lines[-1].moment
        return lines

    @staticmethod
    def _take(cursor: _Cursor, path: Path, final: bool = False) -> list[str]:
        try:
            with path.open("rb") as file:
                file.seek(cursor.position)
                chunk = file.read()
        except FileNotFoundError:
            return []
        cursor.position += len(chunk)
        *complete, cursor.pending = (cursor.pending + chunk).split(b"\n")
        if final and cursor.pending:
            complete.append(cursor.pending)
            cursor.pending = b""
        return [line.decode("utf-8", errors="replace") for line in complete]
