"""The descriptors local runs wait on (each run's pidfd, and its output pipe once it is
watched), in one epoll of their own that the loop watches as a single reader.

Adding and removing a reader through asyncio costs some forty Python calls each way (its
transport checks, selector keys, handles); a run adds and removes at least one. Here it
is one system call each way, and the loop's wake for a run's end costs one epoll_wait
more. Level-triggered, like the loop's own readers.

A run's output pipe is watched only once the run has lasted a while (most runs end
sooner): add_after() queues it, and one loop timer serves the whole queue. A loop timer a
run cost some twenty-five Python calls (its handle, and TimerHandle.__lt__ at each step
of the loop's heap on the way in and out, cancelled or not).
"""

from __future__ import annotations

import asyncio
import select
import time
from collections import deque
from collections.abc import Callable

from watchkeeper.core.per_loop import PerLoop
from watchkeeper.core.turn_end import TurnEnd


class FdWatch(PerLoop):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)  # held weakly: the loop holds this (its reader's callback)
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._turn_end = TurnEnd.of(loop)
        loop.add_reader(self._epoll.fileno(), self._ready)
        # add_after()'s: (monotonic due time, fd, [callback]), in due order; a callback
        # None once its fd was removed before its time.
        self._later: deque[tuple[float, int, list[Callable[[], None] | None]]] = deque()
        self._pending: dict[int, list[Callable[[], None] | None]] = {}
        self._later_timer: asyncio.TimerHandle | None = None

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop whenever `fd` is readable, until remove(fd)."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def add_after(self, delay: float, fd: int, callback: Callable[[], None]) -> None:
        """add(fd, callback) once `delay` seconds have passed, unless remove(fd) comes
        first. Every caller passes the same delay (a run's output watch); a shorter one
        than the last waits for the last's time."""
        due = time.monotonic() + delay
        later = self._later
        if later and due < later[-1][0]:
            due = later[-1][0]  # in order, so the queue's head is always the next due
        entry: list[Callable[[], None] | None] = [callback]
        later.append((due, fd, entry))
        self._pending[fd] = entry
        if self._later_timer is None and (loop := self._loop()) is not None:
            self._later_timer = loop.call_at(due, self._later_due)

    def waiting(self, fd: int) -> bool:
        """`fd` was added with add_after() and is not watched yet."""
        return fd in self._pending

    def remove(self, fd: int) -> None:
        """Before `fd` is closed: a number closed and reused must not find the old
        callback."""
        entry = self._pending.pop(fd, None)
        if entry is not None:
            entry[0] = None
            return
        del self._callbacks[fd]
        self._epoll.unregister(fd)

    def _later_due(self) -> None:
        self._later_timer = None
        later, now = self._later, time.monotonic()
        # Removed ones leave from the head whatever their time: most runs end first.
        while later and (later[0][2][0] is None or later[0][0] <= now):
            _, fd, entry = later.popleft()
            callback = entry[0]
            if callback is not None:
                del self._pending[fd]
                self.add(fd, callback)
        if later and (loop := self._loop()) is not None:
            self._later_timer = loop.call_at(later[0][0], self._later_due)

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
