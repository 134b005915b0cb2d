"""LEADER or STANDBY: one cluster keeper process's life.

A standby campaigns every ~lease/3 and takes over when the lease lapses. A leader runs
a Keeper whose firing claims slots (core/cluster/firing.py), renews the lease, and
steps down the moment it cannot prove it leads: a renewal refused (another epoch), a
claim fenced, or its local deadline passed with the database silent. Then it stops
firing at once, says so loudly, drains its runs and campaigns again as a standby. A
term's Keeper lives for that term only: a standby fires nothing, watches nothing and
hands no file over, because it has no keeper that could.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import psycopg

from watchkeeper.core.atomic import write_atomic
from watchkeeper.core.cluster.adopt import LeaderStore, adopt, let_go, runs_on_workers
from watchkeeper.core.cluster.db import connect
from watchkeeper.core.cluster.dsn import DatabaseUnavailable, masked
from watchkeeper.core.cluster.firing import ClaimingFiring, Claims, Fenced
from watchkeeper.core.cluster.lease import LeaderInfo, Leadership
from watchkeeper.core.cluster.proxy import Proxy, serve_proxy
from watchkeeper.core.cluster.remote import RemoteStarted
from watchkeeper.core.cluster.routing import cluster_executor
from watchkeeper.core.config import Config
from watchkeeper.core.control_protocol import Snapshot
from watchkeeper.core.control_server import ControlServer
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.runtime import ActiveRun
from watchkeeper.core.seams import Started

CLUSTER_FILE = "cluster.json"
LEADER, STANDBY = "LEADER", "STANDBY"
Say = Callable[[str, str], None]  # (level, message): stderr, and the keeper log if any


class Link:
    """One connection to the database, made again after it broke (a restart, a
    network cut). `get()` raises DatabaseUnavailable while it cannot be made."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    async def get(self) -> Any:
        if self.conn is None or self.conn.closed or self.conn.broken:
            await self.reset()
            self.conn = await connect(self.dsn)
        return self.conn

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class _Relay:
    """The store and executor are made before the keeper's log: they log through this,
    which passes on to the keeper's log once there is one."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.log: Any = None

    def error(self, message: str) -> None:
        self.log.error(message) if self.log is not None else self.say("error", message)

    def warning(self, message: str) -> None:
        self.log.warning(message) if self.log is not None else self.say("warning", message)


class ClusterKeeper(Keeper):
    """A keeper for one term of leadership: PostgreSQL's store written with its epoch,
    runs routed to workers by runs_on, slots claimed before they fire, runs a former
    leader left on workers adopted, and a snapshot that says LEADER and the epoch."""

    def __init__(self, config: Config, role: Role) -> None:
        cluster = config.cluster
        assert cluster is not None
        relay = _Relay(role.say)
        store = LeaderStore(config, relay, role.lease.keeper_id)
        store.epoch = role.lease.epoch
        store.fenced_callback = role.fenced
        executor = cluster_executor(cluster.database, cluster.name, log=relay.warning)
        super().__init__(config, store=store, executor=executor)
        relay.log = self.log
        self.role, self.leader_store = role, store
        self.firing = ClaimingFiring(self, self.slots, self.runs, new_claims(role), role.trouble)
        self.runs.on_started.append(on_its_worker)

    async def start(self, catch_up: bool = True, files: bool = True) -> None:
        """As Keeper.start, but the runs a worker carries are adopted, not closed."""
        await runs_on_workers(
            self.leader_store, await self.role.claim_conn(), self.role.lease.cluster, self
        )
        await super().start(catch_up, files)
        await adopt(self, self.leader_store)

    def snapshot(self) -> Snapshot:
        return self._with_role(super().snapshot())

    def snapshot_head(self) -> Snapshot:
        return self._with_role(super().snapshot_head())

    def _with_role(self, snapshot: Snapshot) -> Snapshot:
        extra = cast(dict[str, object], snapshot)
        extra["role"] = self.role.word
        extra["epoch"] = self.role.lease.epoch
        extra["cluster"] = self.role.lease.cluster
        return snapshot


def on_its_worker(active: ActiveRun, started: Started) -> None:
    """A run's record is made before any worker has it, with this keeper's host: the
    host it ran on is the worker's, once one took it (a run withdrawn before names none)."""
    if isinstance(started, RemoteStarted) and started.host:
        active.record.host = started.host


class Role:
    def __init__(
        self,
        config: Config,
        lease: Leadership,
        link: Link,
        socket: Path,
        say: Say,
        make_keeper: Callable[[Role], ClusterKeeper],
    ) -> None:
        assert config.cluster is not None
        self.config, self.lease, self.link, self.socket = config, lease, link, socket
        self.say = say
        self.make_keeper = make_keeper
        self.claim_link = Link(link.dsn)
        self.word = STANDBY
        self.keeper: ClusterKeeper | None = None
        self.lost = asyncio.Event()
        self.proxy: Proxy | None = None
        self.claims_failed = False  # slots went unfired for the database: catch up after

    # ---- the database, each call bounded by a third of the lease ----------------------

    async def _ask(self, call: Callable[[], Any]) -> Any:
        try:
            self.lease.conn = await self.link.get()
            return await asyncio.wait_for(call(), self.lease.renew_every)
        except (TimeoutError, DatabaseUnavailable) as error:
            await self.link.reset()
            raise DatabaseUnavailable(str(error) or "no answer in time") from None

    async def claim_conn(self) -> Any:
        return await self.claim_link.get()

    # ---- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign, lead, step down, campaign again, until `stop`; then let go."""
        down_since: str | None = None
        try:
            await self._stand_by()
            while not stop.is_set():
                try:
                    await self._ask(self.lease.heartbeat)
                    won = await self._ask(self.lease.campaign)
                    if down_since is not None:
                        self.say("info", "cluster database reachable again")
                        down_since = None
                except DatabaseUnavailable as error:
                    if down_since is None:
                        self.say("error", f"cluster database unavailable: {error}")
                        down_since = str(error)
                    won = False
                if won:
                    await self._close_proxy()
                    await self._lead(stop)
                    if not stop.is_set():
                        await self._stand_by()
                    continue
                await _wait(stop, self.lease.renew_every)
        finally:
            await self._close_proxy()
            await self._let_go()

    async def _lead(self, stop: asyncio.Event) -> None:
        self.word, self.lost = LEADER, asyncio.Event()
        epoch = self.lease.epoch
        try:
            keeper = self.keeper = self.make_keeper(self)
        except DatabaseUnavailable as error:
            self.say("error", f"cluster: cannot take up leadership: {error}")
            self.lease.drop()  # it lapses by itself; whoever reaches the database takes it
            self.word = STANDBY
            return
        renewing = asyncio.create_task(self._renew_loop())
        control: ControlServer | None = None
        serving: asyncio.Task[None] | None = None
        try:
            keeper.log.warning(
                f"cluster {self.lease.cluster}: LEADER, epoch {epoch} "
                f"(keeper {self.lease.keeper_id})"
            )
            await keeper.start(catch_up=False)
            control = await self._serve_control(keeper)
            self.write_cluster_file()
            firing = cast(ClaimingFiring, keeper.firing)
            serving = asyncio.create_task(keeper.serve())
            await firing.catch_up(keeper.config.keeper.catch_up, _last_starts(keeper))
            await _first(stop.wait(), self.lost.wait())
        except (DatabaseUnavailable, psycopg.Error, TimeoutError) as error:
            self._lose(f"cannot take up leadership: {error}")
        finally:
            if self.lost.is_set() and not stop.is_set():
                keeper.log.error(
                    f"cluster {self.lease.cluster}: NO LONGER LEADER (epoch {epoch}): "
                    "firing stopped; draining runs in flight, then standing by"
                )
                keeper.stopping = True
                left = let_go(keeper)
                if left:
                    keeper.log.warning(f"{left} run(s) on workers left to the next leader")
            await keeper.stop()
            if serving is not None:
                await serving
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if control is not None:
                await control.close()
            self.keeper, self.word = None, STANDBY
            if not stop.is_set():
                self.lease.drop()
                self.say("warning", f"cluster {self.lease.cluster}: STANDBY")

    async def _renew_loop(self) -> None:
        """Renew every ~lease/3 while this term lasts; `lost` when it ends."""
        unproven = False
        while not self.lost.is_set():
            await _wait(self.lost, self.lease.renew_every)
            if self.lost.is_set():
                return
            try:
                renewed = await self._ask(self.lease.renew)
            except DatabaseUnavailable as error:
                if not self.lease.leading() and not unproven:
                    unproven = True
                    self._say_keeper(
                        "error",
                        f"cluster: cannot prove leadership (database: {error}); "
                        "firing stopped until it can",
                    )
                continue
            if not renewed:
                self._lose("another keeper took the lease (renewal refused)")
                return
            if unproven:
                self._say_keeper("warning", "cluster: leadership proven again; firing resumes")
            if unproven or self.claims_failed:
                unproven = self.claims_failed = False
                await self._catch_up()
            with contextlib.suppress(DatabaseUnavailable):
                await self._ask(self.lease.heartbeat)

    async def _catch_up(self) -> None:
        keeper = self.keeper
        if keeper is None:
            return
        firing = cast(ClaimingFiring, keeper.firing)
        with contextlib.suppress(Exception):  # a failed claim is logged where it failed
            await firing.catch_up(
                keeper.config.keeper.catch_up, _last_starts(keeper), "the database outage"
            )

    def fenced(self, epoch: int) -> None:
        """The store's writer had a write of `epoch` refused."""
        self._lose(f"a write of epoch {epoch} was refused")

    def trouble(self, error: BaseException) -> None:
        """A claim failed: fenced means another keeper leads."""
        if isinstance(error, Fenced):
            self._lose(f"fenced: {error}")
        else:
            self.claims_failed = True

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self._say_keeper("error", f"cluster: leadership lost: {why}")
            self.lease.drop()  # nothing more is claimed or written with that epoch
            if self.keeper is not None:
                self.keeper.leader_store.epoch = None
            self.lost.set()

    def _say_keeper(self, level: str, message: str) -> None:
        keeper = self.keeper
        if keeper is not None:
            getattr(keeper.log, level)(message)  # mirrored on stderr by the daemon
        else:
            self.say(level, message)

    async def _stand_by(self) -> None:
        """A standby's control socket: requests go on to the leader's (core/cluster/proxy.py)."""
        me = {"keeper_id": self.lease.keeper_id, "host": self.lease.host, "pid": self.lease.pid}
        try:
            self.proxy = await serve_proxy(self.socket, self._find_leader, me)
        except OSError as error:
            self.say("error", f"control socket unavailable: {error}")

    async def _find_leader(self) -> LeaderInfo | None:
        info: LeaderInfo | None = await self._ask(self.lease.current)
        return info

    async def _close_proxy(self) -> None:
        proxy, self.proxy = self.proxy, None
        if proxy is not None:
            await proxy.close()

    async def _serve_control(self, keeper: ClusterKeeper) -> ControlServer | None:
        try:
            server = ControlServer(keeper, self.socket)
            await server.start()
        except OSError as error:
            keeper.log.error(f"control socket unavailable: {error}")
            return None
        keeper.log.info(f"control socket at {server.path}")
        return server

    def write_cluster_file(self) -> None:
        """Logs/cluster.json: who leads, for the CLI on this vault to find its socket."""
        lease = self.lease
        record = {
            "cluster": lease.cluster,
            "epoch": lease.epoch,
            "leader": {
                "keeper_id": lease.keeper_id,
                "host": lease.host,
                "pid": lease.pid,
                "socket": lease.socket,
            },
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self.config.vault / "Logs" / CLUSTER_FILE
        try:
            write_atomic(path, json.dumps(record, indent=2) + "\n", 0o600)
        except OSError as error:
            self.say("error", f"cannot write {path}: {error.strerror}")

    async def _let_go(self) -> None:
        """On a clean stop: the lease released so a standby takes over at once."""
        try:
            await self._ask(self.lease.release)
            await self._ask(self.lease.leave)
        except DatabaseUnavailable as error:
            self.say("warning", f"cluster: lease not released ({error}); it lapses by itself")
        await self.link.reset()
        await self.claim_link.reset()

    def describe(self) -> str:
        return (
            f"cluster {self.lease.cluster} on {masked(self.link.dsn)}, keeper "
            f"{self.lease.keeper_id}, lease {self.lease.lease:g}s, socket {self.socket}"
        )


def new_claims(role: Role) -> Claims:
    return Claims(role.lease, role.claim_conn, role.lease.renew_every)


def keeper_socket(vault: Path, pid: int | None = None) -> Path:
    """Each cluster keeper's own control socket: Logs/keeper-<pid>.sock (several may
    serve one vault), in the private runtime directory when that path is too long."""
    from watchkeeper.core.control_protocol import _SUN_PATH_MAX, _private_runtime_dir

    name = f"keeper-{pid or os.getpid()}.sock"
    path = vault.resolve() / "Logs" / name
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    import hashlib

    digest = hashlib.sha256(os.fsencode(vault.resolve())).hexdigest()[:16]
    return _private_runtime_dir() / f"watchkeeper-{digest}-{name}"


def _last_starts(keeper: Keeper) -> dict[str, float]:
    return {
        name: runtime.last.started_at.timestamp()
        for name, runtime in keeper.jobs.items()
        if runtime.last is not None
    }


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
