"""One object of a kind for each event loop: `Kind.of(loop)` makes it at first use.

The registry holds loops weakly, so a loop left behind (tests make many) is still
collected; the object should hold its loop weakly too, for the same reason.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import ClassVar, Self


class PerLoop:
    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PerLoop]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._by_loop = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Self:
        """The loop's own, made at first use (on the loop's thread, where its users are)."""
        found = cls._by_loop.get(loop)
        if found is None:
            found = cls._by_loop[loop] = cls(loop)
        assert isinstance(found, cls)
        return found
