"""The keeper's event stream: bounded per-subscriber queues that never block the keeper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = (
    "run_started",
    "run_finished",
    "job_state",
    "keeper_state",
    "vault_changed",
    "log_line",
    "quota",
    "config_error",
    "config_reloaded",
    "resync",
    "item_decided",  # an item approved, dismissed (core/triage.py) or held as a duplicate
)


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    """One reader's queue. A reader that falls `maxsize` events behind loses the backlog
    and gets a single `resync` event instead, so it can refetch a snapshot."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Event("resync", {"dropped": self.dropped}))

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.get()


class EventBus:
    def __init__(self, listening: Callable[[bool], None] | None = None) -> None:
        """`listening(True)` as the first reader subscribes, `listening(False)` as the
        last one leaves: a publisher with work of its own before each publish (the
        keeper log's two lines a run) does it only while someone reads."""
        self.subscribers: list[Subscription] = []  # a publisher may test it before it builds
        self._listening = listening

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self.subscribers.append(subscription)
        if len(self.subscribers) == 1 and self._listening is not None:
            self._listening(True)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self.subscribers:
            self.subscribers.remove(subscription)
            if not self.subscribers and self._listening is not None:
                self._listening(False)

    def publish(self, kind: str, **data: Any) -> None:
        if not self.subscribers:
            return
        event = Event(kind, data)
        for subscription in self.subscribers:
            subscription.offer(event)

    def lines_of(self, source: str) -> Callable[[str], None]:
        """A publisher of `log_line` events from `source` (a job's output lines)."""

        def publish(line: str) -> None:
            self.publish("log_line", source=source, line=line)

        return publish
