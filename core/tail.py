"""The end of a size-rotated log (x.log, x.log.1, ...) read backwards in blocks, so a
1 GB file costs a few reads; and following it across rotation as `tail -F` does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.core.logs import rotated_name

BLOCK = 64 * 1024
MAX_LINE = 1024 * 1024
"""Our writers never make a line this long (job output is cut at 64 KiB). Scanning back
further without meeting a newline means junk (a sparse or binary file): stop there
instead of reading the whole file to find where that line starts."""
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _lines_before(fd: int, end: int, count: int) -> tuple[list[bytes], bool]:
    """The last `count` lines among the file's first `end` bytes, and whether the file
    held fewer, so that older lines would have to come from the next backup."""
    if count <= 0:
        return [], False
    chunks: list[bytes] = []
    # A final newline ends the last line; it does not separate it from another one.
    separators = 0
    since_newline = 0
    pos = end
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        chunk = os.pread(fd, size, pos)
        if not chunks and chunk.endswith(b"\n"):
            separators -= 1
        separators += chunk.count(b"\n")
        chunks.append(chunk)
        first = chunk.find(b"\n")
        since_newline = since_newline + len(chunk) if first < 0 else first
        if separators >= count or since_newline > MAX_LINE:
            break
    data = b"".join(reversed(chunks))
    if not data:
        return [], True
    lines = (data[:-1] if data.endswith(b"\n") else data).split(b"\n")
    if separators >= count:
        return lines[-count:], False
    if pos > 0:
        # Stopped inside an overlong line: its start is unknown, so it is left out.
        return lines[1:], False
    return lines, True


def _gather(path: Path, count: int, live: tuple[int, int] | None = None) -> list[bytes]:
    """The last `count` lines across `path`, `path.1`, `path.2`, ... (newest file first).

    `live` is an already open (fd, end) for `path` itself, so a follower's backlog ends
    exactly where its following starts.
    """
    collected: list[bytes] = []
    index = 0
    while len(collected) < count:
        if index == 0 and live is not None:
            lines, whole = _lines_before(live[0], live[1], count)
        else:
            try:
                fd = os.open(path if index == 0 else rotated_name(path, index), _READ_FLAGS)
            except FileNotFoundError:
                # A live file missing for a moment (between rename and re-create) is empty.
                if index == 0:
                    index = 1
                    continue
                break
            try:
                lines, whole = _lines_before(fd, os.fstat(fd).st_size, count - len(collected))
            finally:
                os.close(fd)
        collected[:0] = lines
        if not whole:
            break
        index += 1
    return collected


def last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of the log at `path`; when it holds fewer, the rest comes
    from its rotated backups `path.1`, `path.2`, ... Missing files yield no lines."""
    return [_decode(line) for line in _gather(path, count)]


@dataclass
class _Cursor:
    """An open log file and how far into it the follower has read."""

    fd: int
    identity: tuple[int, int]
    position: int = 0
    pending: bytes = b""

    @classmethod
    def open(cls, path: Path) -> _Cursor | None:
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        stat = os.fstat(fd)
        return cls(fd, (stat.st_dev, stat.st_ino))

    def read(self) -> tuple[list[bytes], int]:
        """Complete lines among the next bytes appended, and how many bytes were read."""
        chunk = os.pread(self.fd, BLOCK * 16, self.position)
        self.position += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        if len(self.pending) > MAX_LINE:
            lines.append(self.pending)
            self.pending = b""
        return lines, len(chunk)

    def close(self) -> None:
        os.close(self.fd)


def follow(
    path: Path, stop: Callable[[], bool], poll: float = 0.2, backlog: int = 0
) -> Iterator[str]:
    """The last `backlog` lines of the log at `path`, then each line appended to it, until
    `stop()` returns true (checked at least every `poll` seconds).

    Rotation: when `path` is renamed away and a new file takes its name, the old file is
    read to its end first, then the new one from its start. A file truncated in place is
    read again from its start. A missing file is waited for.
    """
    cursor = _Cursor.open(path)
    try:
        if cursor is not None:
            cursor.position = os.fstat(cursor.fd).st_size
        if backlog > 0:
            live = (cursor.fd, cursor.position) if cursor is not None else None
            for line in _gather(path, backlog, live):
                yield _decode(line)
        while not stop():
            if cursor is None:
                cursor = _Cursor.open(path)
                if cursor is None:
                    time.sleep(poll)
                    continue
            lines, size = cursor.read()
            for line in lines:
                yield _decode(line)
            if size:
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                # Renamed and not yet re-created: keep reading the old file meanwhile.
                time.sleep(poll)
                continue
            if (stat.st_dev, stat.st_ino) != cursor.identity:
                yield from _drain(cursor, stop)
                cursor.close()
                cursor = None
                continue
            if os.fstat(cursor.fd).st_size < cursor.position:
                cursor.position, cursor.pending = 0, b""
                continue
            time.sleep(poll)
    finally:
        if cursor is not None:
            cursor.close()


def _drain(cursor: _Cursor, stop: Callable[[], bool]) -> Iterator[str]:
    """What a rotated-away file got after our last read, down to a final unended line:
    nothing more will be written to it."""
    while not stop():
        lines, size = cursor.read()
        for line in lines:
            yield _decode(line)
        if not size:
            break
    if cursor.pending:
        yield _decode(cursor.pending)
