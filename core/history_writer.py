"""Appends run lines to Logs/history/, to the segment of each line's UTC write day."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.core.appender import Appender, Log
from watchkeeper.core.history_format import segment_path

if TYPE_CHECKING:
    from watchkeeper.core.history_format import RunRecord


class HistoryWriter:
    """Run lines in write order, kept in memory while they cannot be written (see
    core.appender) and logged to `log` when that happens; without a `log`, a failed
    write raises.

    With `defer` set, lines gather until flush(), which `defer` schedules once per batch:
    a busy keeper writes one line per start and one per end, and each write gives up the
    GIL to the spawner threads. A caller that needs a line on disk now calls flush().
    """

    def __init__(self, directory: Path, log: Log | None = None) -> None:
        self.directory = directory
        self.defer: Callable[[Callable[[], None]], object] | None = None
        self._out: Appender[date] = Appender("history", self._segment, log)
        self._flush_due = False
        self._lock = threading.Lock()

    @property
    def retry_later(self) -> Callable[[float, Callable[[], None]], object] | None:
        """Schedules retries of lines a full disk held back (e.g. loop.call_later)."""
        return self._out.retry_later

    @retry_later.setter
    def retry_later(self, schedule: Callable[[float, Callable[[], None]], object] | None) -> None:
        self._out.retry_later = schedule

    @property
    def backlog(self) -> int:
        """Lines held back by a failed write, waiting for the disk."""
        return self._out.backlog

    def _segment(self, day: date) -> Path:
        return segment_path(self.directory, day)

    def append(self, record: RunRecord) -> None:
        self._out.add(record.written_at.astimezone(UTC).date(), record.to_line())
        if self.defer is None:
            self._out.write()
            return
        with self._lock:
            due, self._flush_due = self._flush_due, True
        if not due:
            self.defer(self.flush)

    def flush(self) -> None:
        """Write the lines gathered so far (and any a failed write held back)."""
        with self._lock:
            self._flush_due = False
        self._out.write()

    def close(self) -> None:
        self.defer = None
        self._out.close()
