"""One run's output: the lines of Logs/jobs/<job>.log (and its rotations) tagged [run id].

Read backwards from the end in blocks, newest file first, and stop once the lines are
older than the run: a recent run of a job with a 1 GB log costs a few reads, not a scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from watchkeeper.core.logs import rotated_name
from watchkeeper.core.output import run_tag

BLOCK = 256 * 1024
MAX_SCAN = 256 * 1024 * 1024
"""Give up after this many bytes: a very old run of a very chatty job is not worth it."""
MAX_LINES = 20_000
SLACK = timedelta(seconds=5)
"""Lines are stamped after the record's start time; allow for a clock step."""


@dataclass
class RunOutput:
    lines: list[str] = field(default_factory=list)
    truncated: bool = False
    """Lines were left out: the run printed more than MAX_LINES, or the scan gave up."""


def _stamp(line: bytes) -> datetime | None:
    head = line.split(b" ", 1)[0]
    try:
        return datetime.fromisoformat(head.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def run_output(log: Path, run_id: str, started: datetime | None, backups: int = 9) -> RunOutput:
    """The lines run `run_id` wrote, oldest first, without the tag (stamp kept)."""
    tag = f" {run_tag(run_id)} ".encode()
    floor = started - SLACK if started is not None else None
    found: list[bytes] = []  # newest first while scanning
    scanned = 0
    for index in range(backups + 1):
        path = log if index == 0 else rotated_name(log, index)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if index == 0:
                continue
            break
        try:
            end = os.fstat(fd).st_size
            carry = b""
            while end > 0:
                size = min(BLOCK, end)
                end -= size
                chunk = os.pread(fd, size, end) + carry
                scanned += size
                first_newline = chunk.find(b"\n")
                if end > 0 and first_newline < 0:
                    carry = chunk  # one line longer than the block: read more of it
                    continue
                if end > 0:
                    # The part before the first newline may be cut: read it with the next block.
                    carry, chunk = chunk[: first_newline + 1], chunk[first_newline + 1 :]
                else:
                    carry = b""
                lines = chunk.splitlines()
                found.extend(line for line in reversed(lines) if tag in line)
                if len(found) > MAX_LINES or scanned > MAX_SCAN:
                    return _finish(found, tag, truncated=True)
                if floor is not None and lines:
                    oldest = _stamp(lines[0])
                    if oldest is not None and oldest < floor:
                        return _finish(found, tag, truncated=False)
        finally:
            os.close(fd)
    return _finish(found, tag, truncated=False)


def _finish(found: list[bytes], tag: bytes, truncated: bool) -> RunOutput:
    kept = found[:MAX_LINES]
    return RunOutput(
        [line.replace(tag, b" ", 1).decode("utf-8", errors="replace") for line in reversed(kept)],
        truncated or len(found) > MAX_LINES,
    )
