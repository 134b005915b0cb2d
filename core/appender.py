"""Append-only line files (history segments, the file ledger) that keep what they cannot
write yet.

A full disk or a folder gone unwritable must not lose a record: its line waits here, in
order, and goes out before anything newer once a write works again (tried on every later
write and on a timer). Memory bounds the wait; past that the oldest lines are dropped,
loudly. Only the death of the process loses the rest.

Lines go out in one write() per file on an O_APPEND descriptor, so a reader (or jq) sees
whole lines or, after a crash mid-write, one torn line that readers skip. A write the
disk cut short is finished from where it stopped once there is room again.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from watchkeeper.core import logsdir

MAX_LINES = 100_000
MAX_BYTES = 64 * 1024 * 1024
RETRY_INTERVAL = 2.0  # seconds between tries while nothing else is written
CHUNK = 1024 * 1024  # at most this much a write: retrying on a full disk costs no more


class Log(Protocol):
    def error(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...


Key = TypeVar("Key", bound=Hashable)


def _reason(error: OSError, path: Path) -> str:
    return f"{error.strerror or error} ({error.filename or path})"


class Appender(Generic[Key]):
    """Lines for the files `path_of(key)` names, written in the order they came.

    Without a `log`, a failed write raises (the lines stay, for a later write); with one,
    the failure is logged once, the lines are retried, and their late write is logged.
    Thread-safe. `retry_later(delay, callback)` (e.g. loop.call_later) schedules the
    timer; it is called from the thread whose write failed. Unless `keep_open`, each
    write opens the file anew, so one replaced meanwhile is written, not the old one.
    """

    def __init__(
        self,
        what: str,
        path_of: Callable[[Key], Path],
        log: Log | None = None,
        *,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        keep_open: bool = True,
    ) -> None:
        self.what = what
        self.path_of = path_of
        self.log = log
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.keep_open = keep_open
        self.retry_later: Callable[[float, Callable[[], None]], object] | None = None
        self.dropped = 0  # lines lost to the memory bound, since start
        self._lines: deque[tuple[Key, bytes]] = deque()
        self._size = 0
        self._head_done = 0  # bytes of the first line already on disk (a cut-short write)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._key: Key | None = None
        self._error: str | None = None  # why the lines held back are not on disk yet
        self._held = 0  # lines at the front that a write already failed to put on disk
        self._late = 0  # of those, written since
        self._episode_dropped = 0
        self._retry_due = False

    def add(self, key: Key, line: bytes) -> None:
        """Queue a whole line (ending in a newline) for write()."""
        with self._lock:
            self._lines.append((key, line))
            self._size += len(line)
            notes = self._trim() if self._error is not None else None
        if notes:
            self._tell(notes)

    def waiting(self) -> list[bytes]:
        """Whole lines not on disk yet, oldest first."""
        with self._lock:
            return [line for _, line in self._lines]

    @property
    def backlog(self) -> int:
        """Lines a failed write holds back."""
        return self._held

    def write(self) -> None:
        """Write every queued line, oldest first, stopping at the first failure."""
        with self._lock:
            if not self._lines:
                return
            failure = self._write_out()
            if not self.keep_open:
                self._close_fd()
            notes: list[tuple[str, str]] = []
            retry = False
            if failure is not None:
                error, path = failure
                if self._error is None:
                    self._error = _reason(error, path)
                    notes.append(
                        (
                            "error",
                            f"cannot write {self.what}: {self._error}; "
                            "keeping its lines in memory until it can",
                        )
                    )
                self._held = len(self._lines)
                notes += self._trim()
                retry = not self._retry_due and self.retry_later is not None
                self._retry_due |= retry
            elif self._error is not None:
                note = f"wrote {self._late} {self.what} line(s) late after: {self._error}"
                if self._episode_dropped:
                    note += f"; {self._episode_dropped} were dropped, over the memory bound"
                notes.append(("warning", note))
                self._error, self._late, self._held, self._episode_dropped = None, 0, 0, 0
        if failure is not None and self.log is None:
            raise failure[0]
        if notes:
            self._tell(notes)
        if retry and self.retry_later is not None:
            self.retry_later(RETRY_INTERVAL, self._retry)

    def _retry(self) -> None:
        with self._lock:
            self._retry_due = False
        self.write()

    def close(self) -> None:
        """Write what is queued, then close; lines still held back are lost, and logged."""
        self.retry_later = None
        try:
            self.write()
        finally:
            with self._lock:
                self._close_fd()
                held, error = len(self._lines), self._error
            if held and self.log is not None:
                self.log.error(f"{held} {self.what} line(s) are lost, never written: {error}")

    # ---- under the lock -------------------------------------------------------------

    def _write_out(self) -> tuple[OSError, Path] | None:
        while self._lines:
            key = self._lines[0][0]
            parts: list[bytes] = []
            size = 0
            for line_key, line in self._lines:
                if line_key != key or (parts and size + len(line) > CHUNK):
                    break
                parts.append(line)
                size += len(line)
            data = memoryview(b"".join(parts))[self._head_done :]
            written = 0
            try:
                if self._fd is None or key != self._key:
                    self._open(key)
                assert self._fd is not None
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            except OSError as error:
                self._close_fd()
                self._consume(parts, written)
                return error, self.path_of(key)
            self._consume(parts, written)
        return None

    def _consume(self, parts: list[bytes], written: int) -> None:
        """Take the lines that `written` bytes (from the first one's unwritten part on)
        put on disk off the queue; a line cut short stays first, its written part noted."""
        written += self._head_done
        for line in parts:
            if written < len(line):
                self._head_done = written
                return
            written -= len(line)
            self._lines.popleft()
            self._size -= len(line)
            self._head_done = 0
            if self._held:
                self._held -= 1
                self._late += 1

    def _trim(self) -> list[tuple[str, str]]:
        """Drop the oldest lines past the memory bound."""
        drop = 0
        size = self._size
        for _, line in self._lines:
            if len(self._lines) - drop <= self.max_lines and size <= self.max_bytes:
                break
            drop += 1
            size -= len(line)
        for _ in range(drop):
            self._lines.popleft()
        if not drop:
            return []
        self._size = size
        self._head_done = 0  # a line cut short on disk stays torn: readers skip it
        self._held = max(0, self._held - drop)
        first = self._episode_dropped == 0
        self._episode_dropped += drop
        self.dropped += drop
        if not first and len(str(self._episode_dropped)) == len(str(self._episode_dropped - drop)):
            return []  # loud, but once per tenfold, not once a line
        return [
            (
                "error",
                f"{self.what}: over {self.max_lines} lines or {self.max_bytes // 2**20} MB"
                f" wait to be written; dropped the oldest ({self._episode_dropped} so far)",
            )
        ]

    def _open(self, key: Key) -> None:
        self._close_fd()
        fd = logsdir.open_file(self.path_of(key), os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            # A crash mid-write left a torn line: end it, so our first line stays parseable.
            # A write this process had to cut short is finished instead.
            if size and not self._head_done and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        self._fd, self._key = fd, key

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._key = self._fd, None, None
            # A close may report a failed write-back; what it was about is retried anyway.
            with contextlib.suppress(OSError):
                os.close(fd)

    def _tell(self, notes: list[tuple[str, str]]) -> None:
        # Outside the lock: the log may write, or be a listener that appends again.
        if self.log is None:
            return
        for level, message in notes:
            getattr(self.log, level)(message)
