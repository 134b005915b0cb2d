"""`watchkeeper cluster status` (text and JSON) through the real CLI on a real
PostgreSQL, its errors, and two real cluster keepers: the status, `--status` and a
failover as an operator sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cluster_kit import (
    CLUSTER,
    KEEPER_CONFIG,
    a_keeper,
    a_leader,
    a_remote_run,
    ask_socket,
    busy_cluster,
    cluster_vault,
    prepared,
    sql,
)
from conftest import CLI, run_cli, wait_for

from watchkeeper.core.vault import ensure_layout

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
    assert found["queues"] == [
        {"queue": "wk.ops.gpu", "labels": ["gpu"], "todo": 2, "doing": 1},
        {"queue": "wk.ops.gpu+linux", "labels": ["gpu", "linux"], "todo": 1, "doing": 0},
    ]
    assert leader["leads"] is True


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
    queue_line = next(line for line in out.splitlines() if line.startswith("wk.ops.gpu"))
    assert queue_line.split() == ["wk.ops.gpu", "gpu", "2", "1"]


async def test_cluster_status_without_procrastinate_or_anything_yet(
    tmp_path: Path, pg_dsn: str
) -> None:
    vault = cluster_vault(tmp_path, pg_dsn)
    untouched = run_cli("cluster", "status", "--json", "--vault", str(vault))
    assert untouched.returncode == 0, untouched.stderr
    assert json.loads(untouched.stdout)["leader"] is None

    await prepared(pg_dsn, procrastinate=False)
    a_remote_run(pg_dsn, "r-9", "wk.ops.any", ["any"], None, "queued")
    result = run_cli("cluster", "status", "--json", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["queues"] == [{"queue": "wk.ops.any", "labels": ["any"], "todo": 0, "doing": 0}]
    text = run_cli("cluster", "status", "--vault", str(vault))
    assert "leader: none" in text.stdout and "workers: none" in text.stdout


async def test_a_lapsed_lease_shows_no_leader_and_its_keeper_as_a_standby(
    tmp_path: Path, pg_dsn: str
) -> None:
    await prepared(pg_dsn)
    a_leader(pg_dsn, "alpha:100:aaaaaaaa", 100, "/v/Logs/keeper-100.sock")
    a_keeper(pg_dsn, "alpha:100:aaaaaaaa", 100, "/v/Logs/keeper-100.sock")
    # released as core/cluster/lease.py does at a clean stop: the row stays, lapsed
    sql(pg_dsn, "UPDATE watchkeeper.leader SET expires_at = clock_timestamp() - interval '3s'")
    vault = cluster_vault(tmp_path, pg_dsn)

    found = json.loads(run_cli("cluster", "status", "--json", "--vault", str(vault)).stdout)
    assert found["leader"]["leads"] is False and found["leader"]["lease_left_s"] <= -3
    assert [k["keeper_id"] for k in found["standbys"]] == ["alpha:100:aaaaaaaa"]
    text = run_cli("cluster", "status", "--vault", str(vault)).stdout
    assert "leader: none now: the lease of alpha pid 100 (epoch 7) lapsed " in text, text
    # a keeper id holds ":100:", which rich would have printed as an emoji
    assert "alpha:100:aaaaaaaa  alpha  100" in text, text


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


# ---- real keepers in cluster mode ------------------------------------------------------


def cluster_status(vault: Path) -> dict[str, Any]:
    result = run_cli("cluster", "status", "--json", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_two_real_keepers_a_failover_and_the_cli_through_either(
    tmp_path: Path, pg_dsn: str
) -> None:
    vault = cluster_vault(tmp_path, pg_dsn)
    (vault / "watchkeeper.toml").write_text(
        (vault / "watchkeeper.toml").read_text().replace('lease = "10s"', 'lease = "2s"')
        + textwrap.dedent(KEEPER_CONFIG)
    )
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
    keepers = []
    try:
        for index in range(2):
            with (tmp_path / f"keeper-{index}.out").open("w") as out:
                keepers.append(
                    subprocess.Popen(
                        [str(CLI), "--daemon", "--vault", str(vault)],
                        env={**env, "NO_COLOR": "1"},
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=out,
                    )
                )
        pids = {keeper.pid for keeper in keepers}

        def both_up() -> dict[str, Any] | None:
            found = cluster_status(vault)
            leader = found["leader"]
            if leader and leader["leads"] and found["standbys"] and (
                vault / "Logs" / "cluster.json"
            ).exists():
                return found
            return None

        found = wait_for(both_up, timeout=60)
        assert isinstance(found, dict)
        leader_pid, epoch = found["leader"]["pid"], found["leader"]["epoch"]
        assert {leader_pid, *(k["pid"] for k in found["standbys"])} == pids

        status = run_cli("--status", "--json", "--vault", str(vault))
        assert status.returncode == 0, status.stderr
        keeper = json.loads(status.stdout)["keeper"]
        assert (keeper["pid"], keeper["role"], keeper["epoch"]) == (leader_pid, "LEADER", epoch)
        text = run_cli("--status", "--vault", str(vault)).stdout
        assert f"pid {leader_pid} on " in text and f", LEADER epoch {epoch}" in text
        ran = run_cli("run", "ok", "--wait", "--vault", str(vault))
        assert ran.returncode == 0, ran.stderr + ran.stdout

        # Through the standby's socket: the proxy answers with the leader's status.
        standby = found["standbys"][0]
        answer = ask_socket(Path(standby["socket"]), {"op": "status"})[0]
        assert answer["ok"] is True, answer
        assert (answer["status"]["role"], answer["status"]["pid"]) == ("STANDBY", leader_pid)

        # kill -9 the leader: the standby leads within the lease + 5 s, and the CLI finds it.
        os.kill(leader_pid, signal.SIGKILL)
        next(k for k in keepers if k.pid == leader_pid).wait(10)

        def new_leader() -> dict[str, Any] | None:
            found = cluster_status(vault)
            leader = found["leader"]
            return found if leader and leader["leads"] and leader["pid"] != leader_pid else None

        found = wait_for(new_leader, timeout=30)
        assert isinstance(found, dict)
        assert found["leader"]["pid"] == standby["pid"] and found["leader"]["epoch"] > epoch
        named = vault / "Logs" / "cluster.json"
        wait_for(lambda: json.loads(named.read_text())["leader"]["pid"] == standby["pid"])
        status = run_cli("--status", "--json", "--vault", str(vault))
        assert status.returncode == 0, status.stderr
        keeper = json.loads(status.stdout)["keeper"]
        assert (keeper["pid"], keeper["role"]) == (standby["pid"], "LEADER")
    finally:
        for keeper in keepers:
            if keeper.poll() is None:
                keeper.terminate()
                try:
                    keeper.wait(20)
                except subprocess.TimeoutExpired:
                    keeper.kill()
                    keeper.wait()
