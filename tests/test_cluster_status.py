"""What operators see of a cluster: `watchkeeper cluster status` (text and JSON) read from a
real PostgreSQL, its errors, where the CLI finds the leader's control socket, a standby's
socket forwarding to the leader's, and the console's LEADER/STANDBY and Workers screen.

Rows are written the way the leadership (core/cluster/lease.py) and the workers
(core/cluster/worker.py) write them: the same tables, the same columns."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import run_cli
from procrastinate.schema import SchemaManager

from watchkeeper.core.cluster.schema import ensure_schema
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
    a_remote_run(dsn, "r-1", "wk-ops-gpu", ["gpu"], "beta:4242:w1", "running")
    a_remote_run(dsn, "r-2", "wk-ops-gpu", ["gpu"], None, "queued")
    a_remote_run(dsn, "r-3", "wk-ops-gpu", ["gpu"], None, "queued")
    a_remote_run(dsn, "r-0", "wk-ops-any", ["any"], "beta:4343:w2", "ended")
    a_queued_job(dsn, "wk-ops-gpu")
    a_queued_job(dsn, "wk-ops-gpu")
    a_queued_job(dsn, "wk-ops-gpu", "doing")
    a_queued_job(dsn, "wk-elsewhere-gpu")  # another cluster's queue in the same database


# ---- cluster status ----------------------------------------------------------------


async def test_cluster_status_json_lists_leader_standbys_workers_and_queues(
    tmp_path: Path, pg_dsn: str
) -> None:
    await busy_cluster(pg_dsn)
    vault = cluster_vault(tmp_path, pg_dsn)

    result = run_cli("cluster", "status", "--json", "--vault", str(vault))

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {"cluster", "database", "now", "leader", "standbys", "workers", "queues"}
    assert found["cluster"] == CLUSTER
    leader = found["leader"]
    assert (leader["keeper_id"], leader["host"], leader["pid"], leader["epoch"]) == (
        "alpha:100:aaaaaaaa",
        "alpha",
        100,
        7,
    )
    assert leader["socket"] == "/v/Logs/keeper-100.sock"
    assert 0 < leader["lease_left_s"] <= 10
    assert [k["keeper_id"] for k in found["standbys"]] == ["alpha:200:bbbbbbbb"]
    assert 1.5 <= found["standbys"][0]["seen_age_s"] < 60
    workers = {w["worker_id"]: w for w in found["workers"]}
    assert set(workers) == {"beta:4242:w1", "beta:4343:w2"}
    busy, lapsed = workers["beta:4242:w1"], workers["beta:4343:w2"]
    assert (busy["labels"], busy["concurrency"], busy["alive"]) == (["gpu", "linux"], 2, True)
    assert [run["run_id"] for run in busy["runs"]] == ["r-1"]
    assert busy["runs"][0]["state"] == "running" and busy["runs"][0]["job"] == "crunch"
    assert (lapsed["alive"], lapsed["runs"]) == (False, [])
    assert 44 <= lapsed["heartbeat_age_s"] < 120
    assert found["queues"] == [{"queue": "wk-ops-gpu", "labels": ["gpu"], "todo": 2, "doing": 1}]


async def test_cluster_status_text_is_a_readable_summary(tmp_path: Path, pg_dsn: str) -> None:
    await busy_cluster(pg_dsn)
    vault = cluster_vault(tmp_path, pg_dsn)

    result = run_cli("cluster", "status", "--vault", str(vault))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"cluster {CLUSTER} on postgresql://postgres@/" in out
    assert "leader: alpha pid 100 epoch 7 (lease left " in out
    assert "alpha:200:bbbbbbbb" in out and "alpha:300:cccccccc" not in out
    worker_line = next(line for line in out.splitlines() if line.startswith("beta:4242:w1"))
    assert worker_line.split()[1:4] == ["beta", "gpu,linux", "1/2"]
    assert worker_line.split()[-1] == "r-1" and "LOST" not in worker_line
    lapsed_line = next(line for line in out.splitlines() if line.startswith("beta:4343:w2"))
    assert "LOST" in lapsed_line
    queue_line = next(line for line in out.splitlines() if line.startswith("wk-ops-gpu"))
    assert queue_line.split() == ["wk-ops-gpu", "gpu", "2", "1"]


async def test_cluster_status_without_procrastinate_or_anything_yet(
    tmp_path: Path, pg_dsn: str
) -> None:
    vault = cluster_vault(tmp_path, pg_dsn)
    untouched = run_cli("cluster", "status", "--json", "--vault", str(vault))
    assert untouched.returncode == 0, untouched.stderr
    assert json.loads(untouched.stdout)["leader"] is None

    await prepared(pg_dsn, procrastinate=False)
    a_remote_run(pg_dsn, "r-9", "wk-ops-any", ["any"], None, "queued")
    result = run_cli("cluster", "status", "--json", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["queues"] == [{"queue": "wk-ops-any", "labels": ["any"], "todo": 0, "doing": 0}]
    text = run_cli("cluster", "status", "--vault", str(vault))
    assert "leader: none" in text.stdout and "workers: none" in text.stdout


def test_cluster_status_without_a_cluster_table_is_a_usage_error(tmp_path: Path) -> None:
    vault = tmp_path / "plain"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text('[jobs.a]\ncommand = ["true"]\n')

    result = run_cli("cluster", "status", "--vault", str(vault))

    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        f"not in cluster mode: no [cluster] table in {vault / 'watchkeeper.toml'}" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_cluster_status_with_the_database_down_names_it_masked(
    tmp_path: Path, as_json: bool
) -> None:
    nowhere = tmp_path / "no-server-here"
    nowhere.mkdir()
    dsn = f"postgresql://wk:s3cr3t-pw@/ops?host={nowhere}"
    vault = cluster_vault(tmp_path, dsn)

    result = run_cli("cluster", "status", *(["--json"] if as_json else []), "--vault", str(vault))

    assert result.returncode == 2
    assert result.stdout == ""
    assert "s3cr3t-pw" not in result.stderr
    assert f"cluster database postgresql://wk:***@/ops?host={nowhere} unreachable:" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
