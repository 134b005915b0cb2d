"""The descriptors local runs wait on (each run's pidfd, and its output pipe once it is
watched), in one epoll of their own that the loop watches as a single reader.

Adding and removing a reader through asyncio costs some forty Python calls each way (its
transport checks, selector keys, handles); a run adds and removes at least one. Here it
is one system call each way, and the loop's wake for a run's end costs one epoll_wait
more. Level-triggered, like the loop's own readers.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

from watchkeeper.core.turn_end import TurnEnd

_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FdWatch] = (
    weakref.WeakKeyDictionary()
)


class FdWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Held weakly: the loop holds this (its reader's callback), and a loop left
        # behind (tests make many) must still be collected.
        self._loop = weakref.ref(loop)
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._turn_end = TurnEnd.of(loop)
        loop.add_reader(self._epoll.fileno(), self._ready)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> FdWatch:
        """The loop's own, made at first use."""
        watch = _BY_LOOP.get(loop)
        if watch is None:
            watch = _BY_LOOP[loop] = cls(loop)
        return watch

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop whenever `fd` is readable, until remove(fd)."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Before `fd` is closed: a number closed and reused must not find the old
        callback."""
        del self._callbacks[fd]
        self._epoll.unregister(fd)

    def _ready(self) -> None:
        turn_end = self._turn_end
        turn_end.hold()  # the records of the runs that ended go out as the batch ends
        try:
            for fd, _ in self._epoll.poll(0):
                # A callback before this one may have removed it (and a new descriptor
                # may have its number: callbacks tolerate a call with nothing to read).
                callback = self._callbacks.get(fd)
                if callback is None:
                    continue
                try:
                    callback()
                except Exception as error:  # as the loop treats a failing reader
                    if (loop := self._loop()) is not None:
                        loop.call_exception_handler(
                            {"message": f"fd {fd} watch callback failed", "exception": error}
                        )
        finally:
            turn_end.release()
