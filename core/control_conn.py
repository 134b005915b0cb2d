"""The control socket's connections: requests read under deadlines, and a bounded table of
who is connected, so clients that connect and say nothing (or half a line) can never lock
the CLI and the consoles out.

- A connection sends a complete request within `idle` of connecting or of its last
  answer, and finishes a request within `partial` of its first byte; otherwise it gets an
  error answer and is closed.
- At most `connections` are open at once. When full, a new one evicts the connection that
  has waited longest for a request; only when every one is busy with a request or
  subscribed is the new one refused.
- Subscribers (after `subscribe` the connection sends nothing more) are not idle and never
  evicted, but hold at most `subscribers` places, so requests always have room.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from watchkeeper.core.control_protocol import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_REQUEST,
    MAX_SUBSCRIBERS,
    PARTIAL_TIMEOUT,
    STALL_LIMIT,
    Answer,
    ErrorAnswer,
    encode,
    error_answer,
    idle_answer,
)
from watchkeeper.core.control_roles import Role

_READ_SIZE = 65536


@dataclass(frozen=True)
class Limits:
    idle: float = IDLE_TIMEOUT
    partial: float = PARTIAL_TIMEOUT
    connections: int = MAX_CONNECTIONS
    subscribers: int = MAX_SUBSCRIBERS
    request: int = MAX_REQUEST


async def send(writer: asyncio.StreamWriter, message: Mapping[str, Any]) -> None:
    writer.write(encode(message))
    async with asyncio.timeout(STALL_LIMIT):
        await writer.drain()


class ReadError(Exception):
    """No request could be read; `answer` goes back, then the connection closes."""

    def __init__(self, answer: ErrorAnswer) -> None:
        super().__init__(answer["error"])
        self.answer = answer


class LineReader:
    """Request lines off one connection. Blank lines between requests are skipped but
    do not keep a connection alive: the idle deadline runs until a request is whole."""

    def __init__(self, reader: asyncio.StreamReader, limits: Limits) -> None:
        self._reader = reader
        self._limits = limits
        self._buffer = bytearray()

    async def next(self) -> bytes | None:
        """The next non-blank line without its newline; None when the client ended the
        stream between requests. ReadError when the line is too long, cut off by the end
        of the stream, or not in within its deadline."""
        limits = self._limits
        loop = asyncio.get_running_loop()
        deadline = idle_deadline = loop.time() + limits.idle
        started = False
        while True:
            newline = self._buffer.find(b"\n")
            end = newline if newline >= 0 else len(self._buffer)
            if end > limits.request:
                raise ReadError(error_answer(f"request longer than {limits.request} bytes"))
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if line.strip():
                    return line
                continue
            if not started and self._buffer.strip():
                started = True
                deadline = min(idle_deadline, loop.time() + limits.partial)
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await self._reader.read(_READ_SIZE)
            except TimeoutError:
                if started and deadline < idle_deadline:
                    raise ReadError(
                        error_answer(f"request not finished within {limits.partial:g}s")
                    ) from None
                raise ReadError(idle_answer(f"no request within {limits.idle:g}s")) from None
            if not chunk:
                if self._buffer.strip():
                    raise ReadError(error_answer("request ended without a newline"))
                return None
            self._buffer += chunk


State = Literal["idle", "busy", "subscribed"]


class Slot:
    """One connection's place: waiting for a request (idle), answering one (busy), or
    streaming events (subscribed)."""

    def __init__(self, task: asyncio.Task[None], reader: asyncio.StreamReader) -> None:
        self.task = task
        self.reader = reader
        self.state: State = "idle"
        self.since = time.monotonic()
        self.evicted = False
        self.watch: asyncio.Task[None] | None = None
        self.role: Role = "operate"  # lowered for good by a request that says read

    def waiting(self) -> None:
        self.state, self.since = "idle", time.monotonic()


# Answers one request line: the answer to send, or None when the connection became an
# event stream (and has ended).
Respond = Callable[[Slot, bytes, asyncio.StreamWriter], Awaitable[Answer | None]]


class Connections:
    """Every open connection of one control socket, each served request by request
    through `respond` within the limits."""

    def __init__(self, limits: Limits, respond: Respond) -> None:
        self.limits = limits
        self._respond = respond
        self._slots: dict[asyncio.Task[None], Slot] = {}
        self._leaving: set[asyncio.Task[None]] = set()  # evicted, telling their client why
        self._closing = False

    def __len__(self) -> int:
        return len(self._slots)

    def count(self, state: State) -> int:
        return sum(slot.state == state for slot in self._slots.values())

    def subscribe(self, slot: Slot, writer: asyncio.StreamWriter) -> bool:
        """Make `slot` a subscriber, unless subscribers hold their share already."""
        if self.count("subscribed") >= self.limits.subscribers:
            return False
        slot.state = "subscribed"
        slot.watch = asyncio.create_task(_until_hung_up(slot, writer))
        return True

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._slots, *self._leaving]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _admit(self, task: asyncio.Task[None], reader: asyncio.StreamReader) -> Slot | None:
        """A place for a new connection, evicting the longest idle one when full (its
        task is cancelled, and finds `evicted` set); None when none is idle."""
        if len(self._slots) >= self.limits.connections:
            idle = [slot for slot in self._slots.values() if slot.state == "idle"]
            if not idle:
                return None
            oldest = min(idle, key=lambda slot: slot.since)
            oldest.evicted = True
            oldest.task.cancel()
            del self._slots[oldest.task]  # its place is taken now, not once it has closed
            self._leaving.add(oldest.task)
        slot = Slot(task, reader)
        self._slots[task] = slot
        return slot

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The asyncio server's callback for each new connection."""
        task = asyncio.current_task()
        assert task is not None
        slot = self._admit(task, reader)
        try:
            if slot is None:
                full = self.limits.connections
                await send(writer, error_answer(f"too many connections ({full}, none idle)"))
                return
            await self._serve(slot, reader, writer)
        except (ConnectionError, TimeoutError):
            writer.transport.abort()  # gone or not reading: close() would wait on it
        except asyncio.CancelledError:
            # Ending cancelled would make asyncio (3.11) log a traceback for this handler:
            # a keeper stopping with consoles attached is a clean stop, not a crash.
            task.uncancel()
            if slot is not None and slot.evicted and not self._closing:
                full = self.limits.connections
                why = f"closed to make room: {full} connections open, this one idle the longest"
                # Cancelled again meanwhile (the keeper stopping): done all the same.
                with contextlib.suppress(ConnectionError, TimeoutError, asyncio.CancelledError):
                    await send(writer, idle_answer(why))
        finally:
            if slot is not None:
                if slot.watch is not None:
                    slot.watch.cancel()
                if self._slots.get(task) is slot:
                    del self._slots[task]
                self._leaving.discard(task)
            if self._closing:
                writer.transport.abort()  # a client that does not read must not hold up the stop
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(
        self, slot: Slot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lines = LineReader(reader, self.limits)
        while True:
            slot.waiting()
            try:
                line = await lines.next()
            except ReadError as error:
                # An oversized line's rest cannot be told from the next request, and a
                # client past its deadline has had its chance: answer, then hang up.
                await send(writer, error.answer)
                return
            if line is None:
                return
            slot.state = "busy"
            answer = await self._respond(slot, line, writer)
            if answer is None:
                return
            await send(writer, answer)


async def _until_hung_up(slot: Slot, writer: asyncio.StreamWriter) -> None:
    """A subscriber that left would go unnoticed, holding its place, until an event is
    written to it: end its stream as soon as it closes the connection. One that only
    shut its sending side (`socat` after its stdin ends) still reads, and keeps it."""
    with contextlib.suppress(OSError):
        while await slot.reader.read(_READ_SIZE):
            pass  # a subscriber has nothing more to say: anything it sends is ignored
    if _peer_closed(writer):
        slot.task.cancel()


def _peer_closed(writer: asyncio.StreamWriter) -> bool:
    """Both directions shut: the peer closed (Linux reports POLLHUP on a Unix socket
    only then), not just half-closed it."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))
