"""Writes gathered until the end of the loop's turn, then made together.

A busy keeper writes two history lines and two log lines a run, and each writer asks
for its flush once per batch of lines (`defer`). Asked of the loop (call_soon), that
flush costs a loop turn of its own after each batch of work. Where a batch has a known
end (the firing's wake for a slot, a batch of runs' exits), the batch holds the flushes
and makes them as it ends, in its own turn: a run at every slot is two turns shorter.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from watchkeeper.core.per_loop import PerLoop


class TurnEnd(PerLoop):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)  # held weakly: the loop holds this (a scheduled callback)
        self._thread = threading.get_ident()  # made on the loop's thread (see of())
        self._due: list[Callable[[], None]] = []
        self._scheduled = False
        self._held = 0

    def defer(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this turn's work is done (thread-safe)."""
        loop = self._loop()
        if loop is None:
            return
        if threading.get_ident() != self._thread:
            loop.call_soon_threadsafe(callback)
            return
        self._due.append(callback)
        if not self._held and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._end)

    def hold(self) -> None:
        """What is deferred from now waits for the matching release()."""
        self._held += 1

    def release(self) -> None:
        self._held -= 1
        if not self._held and self._due and not self._scheduled:
            self._end()

    def _end(self) -> None:
        self._scheduled = False
        due, self._due = self._due, []
        for callback in due:
            try:
                callback()
            except Exception as error:  # one failing write must not keep the others back
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "a deferred write failed", "exception": error}
                    )
