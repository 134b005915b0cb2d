"""`watchkeeper --daemon` with a [cluster] table: connect, make sure of the schema, then
lead or stand by (core/cluster/role.py) until SIGINT/SIGTERM.

The vault's flock plays no part here: several keepers may serve one vault (that is how
a failover is tested on one box), and the lease decides which one fires. Each keeper has
its own control socket (Logs/keeper-<pid>.sock), named in the database and, by the
leader, in Logs/cluster.json.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from watchkeeper.core.cluster.db import connect
from watchkeeper.core.cluster.dsn import DatabaseUnavailable
from watchkeeper.core.cluster.lease import Leadership, new_keeper_id
from watchkeeper.core.cluster.role import ClusterKeeper, Link, Role, keeper_socket
from watchkeeper.core.cluster.schema import SchemaTooNew, ensure_schema
from watchkeeper.core.config import Config
from watchkeeper.core.daemon import tune_process

EXIT_OK, EXIT_USAGE = 0, 2


def _stderr(level: str, message: str) -> None:
    # The keeper log's own level words (core/logs.py), so both read alike.
    word = {"warning": "WARN"}.get(level.lower(), level.upper())
    print(f"{word:<5} {message}", file=sys.stderr, flush=True)


def run_cluster_daemon(config: Config) -> int:
    """The process's exit code: 2 when the database cannot be reached or is too new."""
    return asyncio.run(_main(config))


async def _main(config: Config) -> int:
    cluster = config.cluster
    assert cluster is not None
    try:
        conn = await connect(cluster.database)
    except DatabaseUnavailable as error:
        _stderr("error", f"watchkeeper: {error}")
        return EXIT_USAGE
    try:
        await ensure_schema(conn, also=_queue_schema())
    except SchemaTooNew as error:
        _stderr("error", f"watchkeeper: {error}")
        await conn.close()
        return EXIT_USAGE
    except DatabaseUnavailable as error:
        _stderr("error", f"watchkeeper: {error}")
        await conn.close()
        return EXIT_USAGE
    host, pid = socket.gethostname(), os.getpid()
    path = keeper_socket(config.vault, pid)
    lease = Leadership(
        conn, cluster.name, new_keeper_id(host, pid), host, pid, str(path), cluster.lease
    )
    link = Link(cluster.database)
    link.conn = conn
    role = Role(config, lease, link, path, _stderr, _keeper_maker(config))
    stop = asyncio.Event()
    _install_signals(role, stop)
    tune_process()
    _stderr("info", f"watchkeeper: keeper pid {pid} on {config.vault}, {role.describe()}")
    await role.run(stop)
    return EXIT_OK


def _keeper_maker(config: Config) -> Callable[[Role], ClusterKeeper]:
    def make(role: Role) -> ClusterKeeper:
        keeper = ClusterKeeper(config, role)
        # Under systemd, stderr is the journal: mirror the keeper log there.
        keeper.log.listeners.append(lambda stamp, level, message: _stderr(level, message))
        return keeper

    return make


def _queue_schema() -> Callable[[Any], Awaitable[None]]:
    """procrastinate's schema, applied under our schema's lock (core/cluster/queue.py)."""
    from watchkeeper.core.cluster.queue import apply_schema

    return apply_schema


def _install_signals(role: Role, stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM: drain, then release the lease; a second one ends the runs now.
    SIGHUP reloads the leader's config."""
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        keeper = role.keeper
        if stop.is_set():
            if keeper is not None:
                keeper.log.warning(f"{name} again: ending runs now")
                keeper.hurry()
            return
        if keeper is not None:
            keeper.log.info(f"{name}: draining")
        else:
            _stderr("info", f"{name}: stopping")
        stop.set()

    def on_hup() -> None:
        if role.keeper is not None:
            role.keeper.reload("SIGHUP")

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
