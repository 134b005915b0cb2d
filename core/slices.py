"""Long work on the keeper's loop (Dashboard.md, metrics.prom, a drop of ten thousand
files) done a slice at a time, so the slots due meanwhile fire in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

# A slice is this long...
GATHER_SLICE = 0.0005
# ... each followed by a pause this long, so slots keep most of a busy loop, and longer
# (up to MAX_GIVE_WAY) while slots are overdue.
GATHER_PAUSE = 0.001
MAX_GIVE_WAY = 0.1


class Slices:
    """Lets long work on the loop give way to due slots every GATHER_SLICE (pausing
    `pause` seconds each time), and keeps count of the loop time it took."""

    def __init__(
        self, pause: float = GATHER_PAUSE, behind: Callable[[], bool] = lambda: False
    ) -> None:
        self.busy = 0.0
        self.pause = pause
        self.behind = behind
        self._began = time.perf_counter()

    async def give_way(self) -> None:
        now = time.perf_counter()
        if now - self._began > GATHER_SLICE:
            self.busy += now - self._began
            await asyncio.sleep(self.pause)
            # While slots are overdue the loop is theirs (for a while at most).
            while self.behind() and time.perf_counter() - now < MAX_GIVE_WAY:
                await asyncio.sleep(self.pause)
            self._began = time.perf_counter()

    async def collect(self, lines: Iterable[str]) -> str:
        kept = []
        for line in lines:
            kept.append(line)
            await self.give_way()
        now = time.perf_counter()
        self.busy += now - self._began
        self._began = now
        return text_of(kept)


def text_of(lines: Iterable[str]) -> str:
    return "\n".join(lines) + "\n"
