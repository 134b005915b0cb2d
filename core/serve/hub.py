"""One subscription to the keeper's events, fanned out to every SSE client.

Each event gets an id (`<boot>-<n>`, boot naming this server's start) and is kept in a
bounded ring, so a client that reconnects with `Last-Event-ID` gets what it missed. The
keeper sees one reader however many clients there are, and that reader never waits for
a client: each client has its own bounded queue. One that lets it fill while it still
reads (a burst of job output faster than it takes it) loses that backlog for a single
`resync`, as the keeper's own subscribers do; one that takes nothing for `stall` seconds
is dropped, its connection cut. One watch task, not a timer per client and event, times
the clients' writes and sends the keepalives: at 100 clients and 200 events a second,
arming and cancelling two timers for every write was most of the fan-out's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchkeeper.core.control_protocol import ControlError, decode, encode
from watchkeeper.core.serve.link import open_stream

RING = 10_000  # events kept for Last-Event-ID
CLIENT_QUEUE = 2_000  # events a client may fall behind before its backlog becomes a resync
STALL = 5.0  # seconds a client may take to accept one write
RETRY = 0.5  # seconds between attempts to subscribe while no keeper answers
YIELD_EVERY = 64  # events published before the clients' writers get a turn
KEEPALIVE = 15.0  # seconds of quiet before a comment keeps proxies from closing a stream
WATCH = 0.25  # seconds between the watch task's rounds (a stall is seen this much late)
KEEPALIVE_FRAME = b": keepalive\n\n"


def frame(event_id: str, kind: str, data: Any) -> bytes:
    """One Server-Sent Event: JSON data on one line, so no `data:` splitting is needed."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {text}\n\n".encode()


@dataclass
class Item:
    number: int
    kind: str
    frame: bytes


class Client:
    """One SSE connection's queue. `cut` ends its connection (the server aborts the
    transport, so a write blocked on a full socket ends too)."""

    def __init__(
        self, kinds: set[str] | None, cut: Callable[[], None], boot: str = "", stall: float = STALL
    ) -> None:
        self.kinds = kinds
        self.queue: asyncio.Queue[Item] = asyncio.Queue(CLIENT_QUEUE)
        self.dropped: str | None = None
        self.resyncs = 0
        self.stall = stall
        # Set by the writer (sse.py) around each write, read by the hub's watch task.
        self.writing_since: float | None = None
        self.last_write = time.monotonic()
        self._cut = cut
        self._boot = boot

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds or kind == "resync"

    def offer(self, item: Item) -> bool:
        """False when the client could not take it: it was dropped, or its backlog (and
        this event) became one `resync` carrying this event's id, so a reconnect with
        that id resumes after it."""
        if self.dropped is not None:
            return False
        if not self.wants(item.kind):
            return True
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            lost = self.queue.qsize() + 1
            while not self.queue.empty():
                self.queue.get_nowait()
            why = {"reason": f"fell {CLIENT_QUEUE} events behind", "lost": lost}
            self.queue.put_nowait(
                Item(item.number, "resync", frame(f"{self._boot}-{item.number}", "resync", why))
            )
            self.resyncs += 1
            return False
        return True

    def drop(self, why: str) -> None:
        if self.dropped is None:
            self.dropped = why
            self._cut()


class EventHub:
    def __init__(
        self,
        vault: Path,
        ring: int = RING,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.vault = vault
        self.boot = format(int(time.time() * 1000), "x")
        self.ring: deque[Item] = deque(maxlen=ring)
        self.clients: set[Client] = set()
        self.last = 0
        self.connected = False
        self.keeper_pid: int | None = None
        self.dropped_total = 0
        self.resyncs_total = 0
        self.events_total = 0
        self._on_event = on_event
        self._log = log
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    # ---- the keeper side --------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event hub")
        self._watch_task = asyncio.create_task(self._watch(), name="sse watch")

    async def close(self) -> None:
        for task in (self._task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for client in list(self.clients):
            client.drop("the server is stopping")

    async def _run(self) -> None:
        ever = False
        while True:
            try:
                reader, writer = await open_stream(self.vault)
            except ControlError:
                await asyncio.sleep(RETRY)
                continue
            try:
                writer.write(encode({"op": "subscribe", "role": "read"}))
                await writer.drain()
                answer = decode(await reader.readline())
                if not answer.get("ok"):
                    raise ControlError(str(answer.get("error")))
                snapshot = answer.get("snapshot") or {}
                self.connected, self.keeper_pid = True, snapshot.get("pid")
                if ever:
                    # Whatever happened while we were cut off is in the fresh snapshot.
                    self.publish("resync", {"reconnected": True, "snapshot": snapshot})
                ever = True
                while line := await reader.readline():
                    message = decode(line)
                    data = message.get("data")
                    self.publish(str(message.get("event")), data if isinstance(data, dict) else {})
                    if self.last % YIELD_EVERY == 0:
                        # readline does not wait while the keeper's burst is buffered:
                        # let the clients' writers drain their queues before they overflow.
                        await asyncio.sleep(0)
            except (OSError, ValueError, ControlError) as error:
                self._log(f"serve: the keeper's event stream ended: {error}")
            finally:
                writer.close()
            if self.connected:
                self.connected = False
                self.publish("keeper_state", {"state": "GONE", "pid": self.keeper_pid})
            await asyncio.sleep(RETRY)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.last += 1
        self.events_total += 1
        item = Item(self.last, kind, frame(f"{self.boot}-{self.last}", kind, data))
        self.ring.append(item)
        if self._on_event is not None:
            self._on_event(kind, data)
        for client in list(self.clients):
            if client.offer(item):
                continue
            if client.dropped is not None:
                self._forget(client)
            else:
                self.resyncs_total += 1

    async def _watch(self) -> None:
        """Drop a client whose write has waited longer than its stall limit; give an idle
        one a keepalive."""
        while True:
            await asyncio.sleep(WATCH)
            now = time.monotonic()
            for client in list(self.clients):
                if client.writing_since is not None:
                    if now - client.writing_since > client.stall:
                        self.note_drop(client, f"took nothing for {client.stall:g}s")
                elif now - client.last_write >= KEEPALIVE and client.queue.empty():
                    client.queue.put_nowait(Item(0, "keepalive", KEEPALIVE_FRAME))

    # ---- the client side --------------------------------------------------------------

    def attach(
        self, kinds: Iterable[str] | None, cut: Callable[[], None], stall: float = STALL
    ) -> Client:
        client = Client(set(kinds) if kinds is not None else None, cut, self.boot, stall)
        self.clients.add(client)
        return client

    def detach(self, client: Client) -> None:
        self.clients.discard(client)

    def _forget(self, client: Client) -> None:
        self.clients.discard(client)
        self.dropped_total += 1
        self._log(f"serve: dropped an SSE client: {client.dropped}")

    def missed(self, last_event_id: str) -> list[Item] | None:
        """The events after `last_event_id`, or None when they are no longer all here
        (another server's id, or older than the ring): the client needs a resync."""
        boot, _, number = last_event_id.strip().rpartition("-")
        if boot != self.boot or not number.isdigit():
            return None
        after = int(number)
        if after > self.last:
            return None
        first = self.ring[0].number if self.ring else self.last + 1
        if after < first - 1:
            return None
        return [item for item in self.ring if item.number > after]

    def current_id(self) -> str:
        return f"{self.boot}-{self.last}"

    def note_drop(self, client: Client, why: str) -> None:
        client.drop(why)
        if client in self.clients:
            self._forget(client)
