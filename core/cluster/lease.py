"""One leader per cluster: a lease row in watchkeeper.leader, judged by the database's
clock, with an epoch that grows at every takeover (fencing).

A keeper campaigns (takes the lease when it is free or has lapsed, bumping the epoch, in
one statement), renews it every ~lease/3 (only while the row still carries its epoch:
a refused renewal means another keeper took over) and releases it when it stops
cleanly, so a standby need not wait the lease out. Between answers from the database it
trusts itself only until a local deadline in WALL time (the last renewal + lease - a
margin): asyncio's monotonic clock does not count a suspend, the wall clock does, so a
laptop that slept or a VM that was frozen finds its deadline passed and fires nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from watchkeeper.core.cluster.dsn import DatabaseUnavailable

# The local deadline ends this long before the database's: a renewal that took a while
# to come back, or a wall clock a little ahead of the database's, still leaves the
# keeper stopping before any standby may start.
MARGIN_SHARE = 0.25
MAX_MARGIN = 2.0

# Take the lease when nobody holds it, or its holder let it lapse (database clock);
# renew it when this keeper already holds it. The epoch grows on every takeover, never
# on a renewal. RETURNING says who leads after the statement, whoever that is.
_CAMPAIGN = """
INSERT INTO watchkeeper.leader AS l
    (cluster, epoch, keeper_id, host, pid, socket, acquired_at, expires_at)
VALUES (%(cluster)s, 1, %(keeper_id)s, %(host)s, %(pid)s, %(socket)s,
        clock_timestamp(), clock_timestamp() + make_interval(secs => %(lease)s))
ON CONFLICT (cluster) DO UPDATE SET
    epoch = l.epoch + 1, keeper_id = EXCLUDED.keeper_id, host = EXCLUDED.host,
    pid = EXCLUDED.pid, socket = EXCLUDED.socket,
    acquired_at = clock_timestamp(), expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
RETURNING epoch
"""

_RENEW = """
UPDATE watchkeeper.leader
SET expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE cluster = %(cluster)s AND epoch = %(epoch)s AND keeper_id = %(keeper_id)s
RETURNING epoch
"""

# Released by lapsing at once: the row (and its epoch) stays, so the next takeover
# still bumps the epoch past this keeper's.
_RELEASE = """
UPDATE watchkeeper.leader SET expires_at = clock_timestamp()
WHERE cluster = %(cluster)s AND epoch = %(epoch)s AND keeper_id = %(keeper_id)s
"""

_HEARTBEAT = """
INSERT INTO watchkeeper.keepers AS k
    (cluster, keeper_id, host, pid, socket, started_at, seen_at)
VALUES (%(cluster)s, %(keeper_id)s, %(host)s, %(pid)s, %(socket)s,
        clock_timestamp(), clock_timestamp())
ON CONFLICT (cluster, keeper_id) DO UPDATE SET seen_at = clock_timestamp()
"""

_GONE = "DELETE FROM watchkeeper.keepers WHERE cluster = %(cluster)s AND keeper_id = %(keeper_id)s"

_REJECTED = """
INSERT INTO watchkeeper.rejections (cluster, epoch, keeper_id, what)
VALUES (%(cluster)s, %(epoch)s, %(keeper_id)s, %(what)s)
"""

_CURRENT = """
SELECT epoch, keeper_id, host, pid, socket, expires_at > clock_timestamp()
FROM watchkeeper.leader WHERE cluster = %(cluster)s
"""


def new_keeper_id(host: str, pid: int | None = None) -> str:
    return f"{host}:{pid or os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaderInfo:
    """Who holds (or last held) the lease, as the database says."""

    epoch: int
    keeper_id: str
    host: str
    pid: int
    socket: str
    live: bool


@dataclass
class Leadership:
    """This keeper's side of the lease. `conn` is an autocommit psycopg AsyncConnection;
    every call raises DatabaseUnavailable when the database does not answer."""

    conn: Any
    cluster: str
    keeper_id: str
    host: str
    pid: int
    socket: str
    lease: float
    wall: Callable[[], float] = time.time
    epoch: int | None = None
    deadline: float = 0.0  # wall seconds: leading until then, unless told otherwise
    _params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._params = {
            "cluster": self.cluster,
            "keeper_id": self.keeper_id,
            "host": self.host,
            "pid": self.pid,
            "socket": self.socket,
            "lease": self.lease,
        }

    @property
    def margin(self) -> float:
        return min(MAX_MARGIN, self.lease * MARGIN_SHARE)

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    def leading(self) -> bool:
        """Holds the lease as far as this keeper can tell without asking: an epoch, and
        its local deadline (wall time) not passed."""
        return self.epoch is not None and self.wall() < self.deadline

    async def campaign(self) -> bool:
        """Take the lease if it is free or lapsed (a new epoch), or renew it if this
        keeper holds it. True when this keeper leads afterwards."""
        if self.epoch is not None and await self.renew():
            return True
        sent = self.wall()
        row = await self._one(_CAMPAIGN, self._params)
        if row is None:
            return False
        self.epoch = int(row[0])
        self.deadline = sent + self.lease - self.margin
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no epoch any more) when another keeper took it."""
        if self.epoch is None:
            return False
        sent = self.wall()  # before the statement: the database's lease starts later
        row = await self._one(_RENEW, {**self._params, "epoch": self.epoch})
        if row is None:
            self.epoch, self.deadline = None, 0.0
            return False
        self.deadline = sent + self.lease - self.margin
        return True

    async def release(self) -> None:
        """Let the lease lapse now, so a standby takes over without waiting it out."""
        if self.epoch is None:
            return
        epoch, self.epoch, self.deadline = self.epoch, None, 0.0
        await self._execute(_RELEASE, {**self._params, "epoch": epoch})

    def drop(self) -> None:
        """Forget the lease locally (it was lost or cannot be proven any more)."""
        self.epoch, self.deadline = None, 0.0

    async def heartbeat(self) -> None:
        await self._execute(_HEARTBEAT, self._params)

    async def leave(self) -> None:
        await self._execute(_GONE, self._params)

    async def reject(self, epoch: int, what: str) -> None:
        """Record a write refused for its epoch (fencing at work)."""
        await self._execute(_REJECTED, {**self._params, "epoch": epoch, "what": what})

    async def current(self) -> LeaderInfo | None:
        row = await self._one(_CURRENT, self._params)
        if row is None:
            return None
        epoch, keeper_id, host, pid, socket, live = row
        return LeaderInfo(int(epoch), str(keeper_id), str(host), int(pid), str(socket), bool(live))

    async def _one(self, sql: str, params: dict[str, object]) -> tuple[Any, ...] | None:
        try:
            cursor = await self.conn.execute(sql, params)
            row: tuple[Any, ...] | None = await cursor.fetchone()
            return row
        except psycopg.Error as error:
            raise DatabaseUnavailable(_first_line(error)) from None

    async def _execute(self, sql: str, params: dict[str, object]) -> None:
        try:
            await self.conn.execute(sql, params)
        except psycopg.Error as error:
            raise DatabaseUnavailable(_first_line(error)) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
