"""A standby's control socket: each request line goes to the current leader's socket and
its answer comes back unchanged, so `--status`, `run`, `pause`, `jobs` and an attached
console work through any keeper of the cluster on the leader's host. `subscribe` becomes
a relay of the leader's event stream until either side ends it (a console then
subscribes again and reaches whoever leads by then).

`status` (and `subscribe`'s snapshot) say `role` STANDBY (the leader's own says LEADER),
with the `leader` that answered and this `standby`, so a reader can tell it was
forwarded; `epoch` and `cluster` stay the leader's. With no live leader
(a failover in progress) every request is answered `{"ok": false, "error": "no leader
..."}`; a leader on another host is named, since a Unix socket does not reach there.

The connection limits and deadlines are the keeper's own (core/control_conn.py)."""

from __future__ import annotations

import asyncio
import os
import socket as sockets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

from watchkeeper.core.control_conn import Connections, Limits, Slot, send
from watchkeeper.core.control_listen import UnixListener
from watchkeeper.core.control_protocol import (
    STALL_LIMIT,
    Answer,
    decode,
    error_answer,
)

# An answer line may be a page of history: far more than a request.
ANSWER_LIMIT = 64 * 1024 * 1024
_RELAY_SIZE = 65536


class LeaderLike(Protocol):
    """core.cluster.lease.LeaderInfo and core.cluster.discovery.Leader both fit."""

    @property
    def keeper_id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def socket(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def live(self) -> bool: ...


FindLeader = Callable[[], Awaitable[LeaderLike | None]]


class Proxy:
    def __init__(
        self,
        path: Path,
        find_leader: FindLeader,
        me: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.path = path
        self.find_leader = find_leader
        self.me = me or {"pid": os.getpid(), "host": sockets.gethostname()}
        self.connections = Connections(limits or Limits(), self._respond)
        self.listener = UnixListener(path)

    async def start(self) -> None:
        """Bound as the keeper's own socket is: 0600 from the start, a stale file replaced."""
        await self.listener.start(self.connections.handle, self.connections.limits.request)

    async def close(self) -> None:
        if not self.listener.stop_accepting():
            return
        await self.connections.close()
        self.listener.remove()

    async def _leader(self) -> LeaderLike | str:
        """The leader to forward to, or why there is none to reach."""
        try:
            leader = await self.find_leader()
        except Exception as error:  # the database down, most likely: say so, stay up
            return f"no leader known: {error}"
        if leader is None or not leader.live:
            return (
                "no leader: the lease is free or lapsed (a failover in progress?); "
                "a standby takes over within the lease + 5 s, ask again"
            )
        if leader.host != self.me.get("host"):
            return (
                f"the leader is pid {leader.pid} on {leader.host}: this standby (pid "
                f"{self.me.get('pid')} on {self.me.get('host')}) cannot reach its control "
                f"socket; run the command on {leader.host}"
            )
        return leader

    def _marked(self, status: Any, leader: LeaderLike) -> None:
        if not isinstance(status, dict):
            return
        status["role"] = "STANDBY"
        status.setdefault("epoch", leader.epoch)
        status["leader"] = {
            "keeper_id": leader.keeper_id,
            "host": leader.host,
            "pid": leader.pid,
            "socket": leader.socket,
        }
        status["standby"] = self.me

    async def _respond(
        self, slot: Slot, line: bytes, writer: asyncio.StreamWriter
    ) -> Answer | None:
        leader = await self._leader()
        if isinstance(leader, str):
            return error_answer(leader)
        op = _op(line)
        if op == "subscribe" and not self._room_to_subscribe():
            return error_answer("too many subscribers on this standby")
        try:
            upstream, up_writer = await asyncio.open_unix_connection(
                leader.socket, limit=ANSWER_LIMIT
            )
        except OSError as error:
            return error_answer(
                f"the leader pid {leader.pid} does not answer on {leader.socket}: "
                f"{error.strerror or error}; ask again"
            )
        try:
            try:
                up_writer.write(line + b"\n")
                await up_writer.drain()
                raw = await upstream.readline()
                answer = decode(raw) if raw.endswith(b"\n") else None
            except (OSError, ValueError, RecursionError) as error:
                return error_answer(f"the leader pid {leader.pid} went away: {error}; ask again")
            if answer is None:
                return error_answer(
                    f"the leader pid {leader.pid} went away before answering; ask again"
                )
            if answer.get("ok") and op == "status":
                self._marked(answer.get("status"), leader)
            if answer.get("ok") and op == "subscribe":
                self._marked(answer.get("snapshot"), leader)
                self.connections.subscribe(slot, writer)
                await send(writer, answer)
                await _relay(upstream, writer)
                return None
            return cast(Answer, answer)
        finally:
            up_writer.close()

    def _room_to_subscribe(self) -> bool:
        return self.connections.count("subscribed") < self.connections.limits.subscribers


def _op(line: bytes) -> str | None:
    """The request's op, if it has one; a bad request is the leader's to answer."""
    try:
        op = decode(line).get("op")
    except (ValueError, RecursionError):
        return None
    return op if isinstance(op, str) else None


async def _relay(upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The leader's events to the client, as they come, until the leader ends the stream."""
    while True:
        try:
            chunk = await upstream.read(_RELAY_SIZE)
        except OSError:
            return
        if not chunk:
            return
        writer.write(chunk)
        async with asyncio.timeout(STALL_LIMIT):
            await writer.drain()


async def serve_proxy(
    socket_path: Path,
    find_leader: FindLeader,
    me: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> Proxy:
    """Serve a standby's control socket at `socket_path` until close(). `find_leader`:
    who leads now (core.cluster.lease.Leadership.current fits); `me`: this standby's
    {keeper_id, host, pid}, shown in `status`."""
    proxy = Proxy(socket_path, find_leader, me, limits)
    await proxy.start()
    return proxy
