"""Shared by the cluster surface tests (test_cluster_status, test_cluster_reach,
test_cluster_console): cluster vaults on a real PostgreSQL, rows written the way the
leadership (core/cluster/lease.py) and the workers (core/cluster/worker.py) write them,
a real keeper's control socket to forward to, and the real CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

import psycopg
from conftest import CLI, finish, started_keeper
from procrastinate.schema import SchemaManager

from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.control_server import start_control
from watchkeeper.core.vault import ensure_layout

CLUSTER = "ops"


def cluster_vault(tmp_path: Path, dsn: str, name: str = "vault") -> Path:
    vault = tmp_path / name
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(
        textwrap.dedent(
            f"""
            [cluster]
            database = "{dsn}"
            name = "{CLUSTER}"
            lease = "10s"

            [jobs.tick]
            command = ["true"]
            every = "1h"
            """
        )
    )
    return vault


async def prepared(dsn: str, procrastinate: bool = True) -> None:
    """The schema a keeper applies at start, and procrastinate's (the remote executor's)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def queue_schema(conn: Any) -> None:
            if procrastinate:
                await conn.execute(SchemaManager.get_schema())

        await ensure_schema(conn, queue_schema)


def sql(dsn: str, statement: str, *params: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def a_leader(dsn: str, keeper_id: str, pid: int, socket: str, epoch: int = 7) -> None:
    sql(
        dsn,
        "INSERT INTO watchkeeper.leader VALUES (%s, %s, %s, 'alpha', %s, %s,"
        " clock_timestamp() - interval '1 minute', clock_timestamp() + interval '10 seconds')"
        " ON CONFLICT (cluster) DO UPDATE SET epoch = excluded.epoch,"
        " keeper_id = excluded.keeper_id, pid = excluded.pid, socket = excluded.socket,"
        " expires_at = excluded.expires_at",
        CLUSTER,
        epoch,
        keeper_id,
        pid,
        socket,
    )


def a_keeper(dsn: str, keeper_id: str, pid: int, socket: str, seen_ago: str = "1 second") -> None:
    sql(
        dsn,
        "INSERT INTO watchkeeper.keepers VALUES (%s, %s, 'alpha', %s, %s,"
        " clock_timestamp() - interval '2 minutes', clock_timestamp() - %s::interval)",
        CLUSTER,
        keeper_id,
        pid,
        socket,
        seen_ago,
    )


def a_worker(
    dsn: str, worker_id: str, labels: list[str], seen_ago: str, cluster: str = CLUSTER
) -> None:
    sql(
        dsn,
        "INSERT INTO watchkeeper.workers VALUES (%s, %s, 'beta', 4242, %s, 2,"
        " clock_timestamp() - interval '5 minutes', clock_timestamp() - %s::interval)",
        cluster,
        worker_id,
        labels,
        seen_ago,
    )


def a_remote_run(
    dsn: str, run_id: str, queue: str, runs_on: list[str], worker: str | None, state: str
) -> None:
    sql(
        dsn,
        "INSERT INTO watchkeeper.remote_runs (cluster, run_id, job, queue, spec, worker_id,"
        " state, started_at) VALUES (%s, %s, 'crunch', %s, %s, %s, %s,"
        " CASE WHEN %s::text IS NULL THEN NULL ELSE clock_timestamp() END)",
        CLUSTER,
        run_id,
        queue,
        json.dumps({"runs_on": runs_on, "job": "crunch"}),
        worker,
        state,
        worker,
    )


def a_queued_job(dsn: str, queue: str, status: str = "todo") -> None:
    sql(
        dsn,
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
        " VALUES (%s, 'watchkeeper.run', %s)",
        queue,
        status,
    )


async def busy_cluster(dsn: str) -> None:
    await prepared(dsn)
    a_leader(dsn, "alpha:100:aaaaaaaa", 100, "/v/Logs/keeper-100.sock")
    a_keeper(dsn, "alpha:100:aaaaaaaa", 100, "/v/Logs/keeper-100.sock")
    a_keeper(dsn, "alpha:200:bbbbbbbb", 200, "/v/Logs/keeper-200.sock", "2 seconds")
    a_keeper(dsn, "alpha:300:cccccccc", 300, "/v/Logs/keeper-300.sock", "1 hour")  # long gone
    a_worker(dsn, "beta:4242:w1", ["gpu", "linux"], "1 second")
    a_worker(dsn, "beta:4343:w2", ["linux"], "45 seconds")  # heartbeat lapsed
    a_worker(dsn, "beta:4444:w3", ["gpu"], "1 second", cluster="elsewhere")
    a_remote_run(dsn, "r-1", "wk.ops.gpu", ["gpu"], "beta:4242:w1", "running")
    a_remote_run(dsn, "r-2", "wk.ops.gpu", ["gpu"], None, "queued")
    a_remote_run(dsn, "r-3", "wk.ops.gpu", ["gpu"], None, "queued")
    a_remote_run(dsn, "r-0", "wk.ops.any", ["any"], "beta:4343:w2", "ended")
    a_queued_job(dsn, "wk.ops.gpu")
    a_queued_job(dsn, "wk.ops.gpu")
    a_queued_job(dsn, "wk.ops.gpu", "doing")
    a_queued_job(dsn, "wk.elsewhere.gpu")  # another cluster's queue in the same database
    a_queued_job(dsn, "wk.ops.gpu+linux")  # deferred a moment before its remote_runs row


KEEPER_CONFIG = """
    [jobs.ok]
    command = ["true"]

    [jobs.slow]
    command = ["sleep", "30"]
    """


def plain_vault(folder: Path, name: str) -> Path:
    vault = folder / name
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(KEEPER_CONFIG))
    return vault


def ask_socket(path: Path, *requests: dict[str, Any]) -> list[dict]:
    """Send `requests` on one connection and read the answer to each."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        answers = []
        for request in requests:
            sock.sendall(json.dumps(request).encode() + b"\n")
            answers.append(json.loads(reader.readline()))
        return answers


@dataclass(frozen=True)
class FakeLeader:
    """Who leads, as core.cluster.lease.Leadership.current() answers it."""

    keeper_id: str
    host: str
    pid: int
    socket: str
    epoch: int
    live: bool = True


@contextlib.asynccontextmanager
async def leader_keeper(vault: Path) -> AsyncIterator[Path]:
    """A real keeper serving its control socket in this process: the leader's socket."""
    keeper = await started_keeper(vault)
    server = await start_control(keeper)
    assert server is not None
    serving = asyncio.create_task(keeper.serve())
    try:
        yield server.path
    finally:
        await server.close()
        await finish(keeper, serving)


def write_cluster_file(
    vault: Path, cluster: str, epoch: int, keeper_id: str, host: str, pid: int, socket: str
) -> None:
    """Logs/cluster.json as the leader writes it (core/cluster/role.py)."""
    leader = {"keeper_id": keeper_id, "host": host, "pid": pid, "socket": socket}
    record = {"cluster": cluster, "epoch": epoch, "leader": leader, "updated": "2026-12-06"}
    (vault / "Logs" / "cluster.json").write_text(json.dumps(record))


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI as a child process, without blocking this loop (it serves the keeper)."""
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
    child = await asyncio.create_subprocess_exec(
        str(CLI), *args, env={**env, "NO_COLOR": "1"}, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()
