"""GET /events: the keeper's events as Server-Sent Events.

A fresh connection starts with a `snapshot` event (the keeper's status); one that comes
back with `Last-Event-ID` gets the events it missed from the hub's ring, or a `resync`
with a fresh snapshot when they are gone. `?kinds=a,b` keeps only those kinds (`resync`
always comes). A comment every KEEPALIVE seconds keeps proxies from closing a quiet
stream (sent by the hub's watch task, which also drops a client whose write waits
longer than the stall limit).
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from aiohttp import web

from watchkeeper.core.control_protocol import ControlError
from watchkeeper.core.events import EVENT_KINDS
from watchkeeper.core.serve.hub import STALL, Client, EventHub, frame
from watchkeeper.core.serve.link import ask

BATCH = 512  # events written at once to a client that fell behind
# The kernel's send buffer for an SSE socket: what a client that stopped reading can hold
# of ours before its writes block and the stall limit starts counting.
SEND_BUFFER = 128 * 1024
KINDS = frozenset(EVENT_KINDS)


def wanted_kinds(request: web.Request) -> set[str] | None:
    text = request.query.get("kinds")
    if text is None:
        return None
    kinds = {kind.strip() for kind in text.split(",") if kind.strip()}
    unknown = sorted(kinds - KINDS)
    if unknown:
        raise web.HTTPBadRequest(
            text=f"unknown event kind(s) {', '.join(unknown)}; kinds: {', '.join(EVENT_KINDS)}\n"
        )
    return kinds


async def _snapshot(hub: EventHub) -> tuple[str, dict[str, Any]]:
    try:
        answer = await ask(hub.vault, "status", role="read")
    except ControlError as error:
        return "keeper_state", {"state": "GONE", "error": str(error)}
    return "snapshot", answer["status"]


async def stream(request: web.Request, hub: EventHub, stall: float = STALL) -> web.StreamResponse:
    kinds = wanted_kinds(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    def cut() -> None:
        if transport is not None:
            transport.abort()

    # attach and missed() with no await between them: nothing is both replayed and queued.
    client = hub.attach(kinds, cut, stall)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    at = hub.current_id()
    replay = hub.missed(last) if last else None
    try:
        first = b"retry: 1000\n\n"
        if replay is not None:
            first += b"".join(item.frame for item in replay if client.wants(item.kind))
        else:
            kind, data = await _snapshot(hub)
            if last:
                kind, data = "resync", {"reason": f"events after {last} are gone", "snapshot": data}
            first += frame(at, kind, data)
        await _write(response, first, client)
        while client.dropped is None:
            chunk = [(await client.queue.get()).frame]
            while len(chunk) < BATCH and not client.queue.empty():
                chunk.append(client.queue.get_nowait().frame)
            await _write(response, b"".join(chunk), client)
    except (ConnectionError, RuntimeError):
        pass  # the client left, or was cut: aiohttp's writer is closed
    finally:
        hub.detach(client)
    return response


async def _write(response: web.StreamResponse, data: bytes, client: Client) -> None:
    """The hub's watch task cuts the connection of a write that waits too long, which
    ends the write with a ConnectionError."""
    client.writing_since = time.monotonic()
    try:
        await response.write(data)
    finally:
        client.writing_since = None
        client.last_write = time.monotonic()
    if client.dropped is not None:
        raise ConnectionError("dropped")
