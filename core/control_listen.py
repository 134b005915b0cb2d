"""The Unix socket a keeper (or a cluster standby's proxy) listens on: bound under a
scratch name, made 0600, then renamed into place, so it is never reachable with looser
permissions and a stale one is replaced; on close only our own socket is removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

# Connections waiting to be accepted: a crowd connecting at once is queued, not refused.
BACKLOG = 512

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class UnixListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._server: asyncio.Server | None = None
        self._inode: int | None = None

    async def start(self, handle: Handler, limit: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never longer than the final name: a path that fits sun_path must bind.
        scratch = self.path.with_name(f".wk{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.fsencode(scratch))
            os.chmod(scratch, 0o600)
            os.replace(scratch, self.path)
            listener.listen(BACKLOG)
            listener.setblocking(False)
            self._inode = self.path.stat().st_ino
            self._server = await asyncio.start_unix_server(
                handle, sock=listener, limit=limit, backlog=BACKLOG
            )
        except BaseException:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
            raise

    def stop_accepting(self) -> bool:
        """Accept no more connections; False when it was not listening."""
        if self._server is None:
            return False
        self._server.close()
        return True

    def remove(self) -> None:
        """Only our own socket: a keeper that started after us may have put its own there."""
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._server = None
