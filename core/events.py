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
    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    @property
    def has_subscribers(self) -> bool:
        """Lets a publisher skip building an event nobody reads."""
        return bool(self._subscribers)

    def publish(self, kind: str, **data: Any) -> None:
        if not self._subscribers:
            return
        event = Event(kind, data)
        for subscription in self._subscribers:
            subscription.offer(event)

    def lines_of(self, source: str) -> Callable[[str], None]:
        """A publisher of `log_line` events from `source` (a job's output lines)."""

        def publish(line: str) -> None:
            self.publish("log_line", source=source, line=line)

        return publish
