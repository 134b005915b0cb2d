"""The worker's end of a run's guard (core/cluster/guard.py): starting one, reading its
status lines, and carrying the run's output from its pipe to the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

GUARD = str(Path(__file__).with_name("guard.py"))
READ_SIZE = 65536


@dataclass
class Guard:
    """A guard process waiting for its run's spec on stdin."""

    process: subprocess.Popen[bytes]
    out: int  # the read end of its stdout: the run's output
    status: int  # the read end of its status lines

    @staticmethod
    def spawn() -> Guard:
        """From the loop's thread: PR_SET_PDEATHSIG fires when the thread that started
        the guard ends, and the loop's thread lives as long as the worker."""
        out_read, out_write = os.pipe()
        status_read, status_write = os.pipe()
        try:
            process = subprocess.Popen(
                # -I -S: the guard is stdlib only, and starts ~10 ms sooner without site.
                [sys.executable, "-I", "-S", GUARD, str(status_write), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=out_write,
                pass_fds=(status_write,),
            )
        except OSError:
            os.close(out_read)
            os.close(status_read)
            raise
        finally:
            os.close(out_write)
            os.close(status_write)
        return Guard(process, out_read, status_read)

    def discard(self) -> None:
        self.process.kill()  # still waiting for a spec: nothing of a run's to end
        self.process.wait()
        os.close(self.out)
        os.close(self.status)


class OutputStream:
    """A run's output from the guard's pipe to `write`, one write at a time: what
    arrives meanwhile goes in the next one, so a chatty run costs a row per round trip,
    not per read. `closed` resolves once the pipe's end is written."""

    def __init__(
        self,
        fd: int,
        write: Callable[[bytes], Awaitable[None]],
        lost: Callable[[Exception], None],
    ) -> None:
        self.fd, self.write, self.lost = fd, write, lost
        self.loop = asyncio.get_running_loop()
        self.pending: list[bytes] = []
        self.writing = False
        self.eof = False
        self.closed: asyncio.Future[None] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        if data:
            self.pending.append(data)
        else:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.eof = True
        if not self.writing:
            self.writing = True
            self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        while self.pending:
            chunk, self.pending = b"".join(self.pending), []
            try:
                await self.write(chunk)
            except Exception as error:  # the database refused it even after waiting
                self.lost(error)
        self.writing = False
        if self.eof and not self.closed.done():
            self.closed.set_result(None)


async def read_status(fd: int, on_pid: Callable[[int], Awaitable[None]]) -> list[str]:
    """The guard's status lines until it exits; `on_pid` is awaited at `pid N`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    lines: list[str] = []
    try:
        while line := (await reader.readline()).decode().strip():
            lines.append(line)
            if line.startswith("pid "):
                await on_pid(int(line.split()[1]))
    finally:
        transport.close()
    return lines
