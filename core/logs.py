"""Size-rotated log files (keeper log and job logs) that degrade instead of failing."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path

from watchkeeper.core import logsdir


def rotated_name(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


class RotatingFile:
    """Appends bytes to `path`; past `max_size` renames it to .1 (.1 to .2 ...) first.

    A failing write (disk full, permissions) is reported once through `on_error` and
    the data dropped: losing log lines is better than stopping the scheduler.
    """

    # Slots: a keeper holds one per job, thousands of them.
    __slots__ = ("_fd", "_path", "_size", "backups", "failed_writes", "max_size", "on_error")

    def __init__(
        self,
        path: Path | None,
        max_size: int,
        backups: int,
        on_error: Callable[[Path, OSError], None] | None = None,
    ) -> None:
        self._path = path
        self.max_size = max_size
        self.backups = backups
        self.on_error = on_error
        self.failed_writes = 0
        self._fd: int | None = None
        self._size = 0

    @property
    def path(self) -> Path:
        assert self._path is not None
        return self._path

    def write(self, data: bytes) -> None:
        try:
            if self._fd is None:
                self._open()
            if self.max_size and self._size and self._size + len(data) > self.max_size:
                self._rotate()
            assert self._fd is not None
            os.write(self._fd, data)
            self._size += len(data)
        except OSError as error:
            self.failed_writes += 1
            self.close()
            if self.failed_writes == 1 and self.on_error is not None:
                self.on_error(self.path, error)
            return
        if self.failed_writes:
            # Writes work again: let the next failure be reported as well.
            self.failed_writes = 0

    def _open(self) -> None:
        self._fd = logsdir.open_file(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
        if self.backups <= 0:
            os.truncate(self.path, 0)
        else:
            for index in range(self.backups - 1, 0, -1):
                older = rotated_name(self.path, index)
                if older.exists():
                    os.replace(older, rotated_name(self.path, index + 1))
            os.replace(self.path, rotated_name(self.path, 1))
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # A failed write-back reported at close is one more lost log line, not a crash.
            with contextlib.suppress(OSError):
                os.close(fd)


class JobLogFile(RotatingFile):
    """A job's log, `folder`/<job>.log. Its Path is made at first use: an idle keeper
    with 10,000 jobs held ~3 MB of them (with the folder Paths made on the way)."""

    __slots__ = ("folder", "job")

    def __init__(
        self,
        folder: Path,
        job: str,
        max_size: int,
        backups: int,
        on_error: Callable[[Path, OSError], None] | None = None,
    ) -> None:
        super().__init__(None, max_size, backups, on_error)
        self.folder = folder
        self.job = job

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = self.folder / f"{self.job}.log"
        return self._path


def _stderr_warning(path: Path, error: OSError) -> None:
    # stderr may be gone too (a closed terminal, a full disk behind a redirect).
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(
            f"watchkeeper: cannot write {path}: {error.strerror}; logging degraded",
            file=sys.stderr,
        )


def _encode(text: str) -> bytes:
    # A file name that is not UTF-8 reaches a message as surrogate escapes: shown, not fatal.
    return text.encode(errors="backslashreplace")


class Stamp:
    """A moment as datetime.fromtimestamp(moment, tz).isoformat(timespec="milliseconds")
    writes it, the date, time and offset of its second made once a second: a busy keeper
    logs two lines a run. Local time when `tz` is None."""

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz
        self._second: int | None = None
        self._head = ""  # YYYY-MM-DDTHH:MM:SS
        self._offset = ""  # +HH:MM

    def of(self, moment: float) -> str:
        second = math.floor(moment)
        # Rounded to the microsecond (half to even) first, as datetime does.
        micro = round((moment - second) * 1_000_000)
        if micro == 1_000_000:
            second, micro = second + 1, 0
        if second != self._second:
            if self.tz is None:
                local = datetime.fromtimestamp(second).astimezone()
            else:
                local = datetime.fromtimestamp(second, self.tz)
            text = local.isoformat()
            self._second, self._head, self._offset = second, text[:19], text[19:]
        return f"{self._head}.{micro // 1000:03d}{self._offset}"


class KeeperLog:
    """Logs/watchkeeper.log: one line per event, ISO 8601 time with offset, level, text.

    Listeners (the event stream) see every line even when the file cannot be written.
    """

    def __init__(self, path: Path, max_size: int, backups: int, tz: tzinfo | None = None) -> None:
        self.file = RotatingFile(path, max_size, backups, on_error=_stderr_warning)
        self._stamp = Stamp(tz)
        self.listeners: list[Callable[[str, str, str], None]] = []
        self.defer: Callable[[Callable[[], None]], object] | None = None
        """Set to a (thread-safe) scheduler to gather the lines of one loop turn into one
        write: a busy keeper logs two lines a run."""
        self._buffer: list[str] = []

    def write(self, level: str, message: str) -> None:
        stamp = self._stamp.of(time.time())
        line = f"{stamp} {level:<5} {message}\n"
        if self.defer is None:
            self.file.write(_encode(line))
        else:
            self._buffer.append(line)
            if len(self._buffer) == 1:
                self.defer(self.flush)
        for listener in self.listeners:
            listener(stamp, level, message)

    def flush(self) -> None:
        lines, self._buffer = self._buffer, []
        if lines:
            self.file.write(_encode("".join(lines)))

    def info(self, message: str) -> None:
        self.write("INFO", message)

    def warning(self, message: str) -> None:
        self.write("WARN", message)

    def error(self, message: str) -> None:
        self.write("ERROR", message)

    def close(self) -> None:
        self.defer = None
        self.flush()
        self.file.close()


def open_keeper_log(logs: Path, mode: int, max_size: int, backups: int, tz: tzinfo) -> KeeperLog:
    """Logs/ and its folders made and kept private (as `mode` lets a group in), and the
    keeper's own log in it."""
    for folder in (logs / "jobs", logs / "history"):
        logsdir.make_folder(folder)
    changed = logsdir.secure(logs, mode)
    log = KeeperLog(logs / "watchkeeper.log", max_size, backups, tz)
    if changed:
        log.info(f"Logs/: the modes of {changed} file(s) set for log_mode {mode:o}")
    return log
