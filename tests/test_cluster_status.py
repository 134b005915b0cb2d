"""What operators see of a cluster: `watchkeeper cluster status` (text and JSON) read from a
real PostgreSQL, its errors, where the CLI finds the leader's control socket, a standby's
socket forwarding to the leader's, and the console's LEADER/STANDBY and Workers screen.

Rows are written the way the leadership (core/cluster/lease.py) and the workers
(core/cluster/worker.py) write them: the same tables, the same columns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from subprocess import PIPE
from typing import Any

import psycopg
import pytest
from conftest import CLI, finish, pilot_until, run_cli, started_keeper, wait_for
from console_kit import console, header, screen_text
from procrastinate.schema import SchemaManager

from watchkeeper.core.client import SocketClient
from watchkeeper.core.cluster.discovery import this_host
from watchkeeper.core.cluster.proxy import serve_proxy
from watchkeeper.core.cluster.role import keeper_socket
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.config import load_config
from watchkeeper.core.control_protocol import ControlUnavailable
from watchkeeper.core.control_server import start_control
from watchkeeper.core.lock import holder
from watchkeeper.core.vault import ensure_layout
from watchkeeper.tui.app import make_app
from watchkeeper.tui.commands import screen_commands
from watchkeeper.tui.model import Model
from watchkeeper.tui.screens.workers import WorkersScreen
from watchkeeper.tui.session import connect
from watchkeeper.tui.text import Clock
from watchkeeper.tui.themes import shipped_dir
from watchkeeper.tui.widgets.header import HeaderBar

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


# ---- a standby's socket forwards to the leader's; the CLI finds either ---------------

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


async def test_a_standby_forwards_requests_and_the_event_stream_to_the_leader(
    tmp_path: Path,
) -> None:
    vault = plain_vault(tmp_path, "vault")
    async with leader_keeper(vault) as leader_socket:
        leader = FakeLeader("here:1:abc", this_host(), os.getpid(), str(leader_socket), 12)

        async def find() -> FakeLeader:
            return leader

        me = {"keeper_id": "here:2:def", "host": this_host(), "pid": 424242}
        proxy = await serve_proxy(tmp_path / "standby.sock", find, me)
        try:
            status, jobs = await asyncio.to_thread(
                ask_socket, proxy.path, {"op": "status"}, {"op": "jobs"}
            )
            assert status["ok"] is True
            assert status["status"]["pid"] == os.getpid()  # the leader's own answer
            answered = status["status"]
            assert (answered["role"], answered["epoch"], answered["standby"]) == ("STANDBY", 12, me)
            assert answered["leader"] == {
                "keeper_id": "here:1:abc",
                "host": this_host(),
                "pid": os.getpid(),
                "socket": str(leader_socket),
            }
            assert sorted(job["name"] for job in jobs["jobs"]) == ["ok", "slow"]
            refused = await asyncio.to_thread(ask_socket, proxy.path, {"op": "run", "job": "nope"})
            assert refused[0]["ok"] is False and "nope" in refused[0]["error"]

            # subscribe: the snapshot, then the leader's events as they happen
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
                stream.settimeout(30)
                await asyncio.to_thread(stream.connect, str(proxy.path))
                stream.sendall(b'{"op": "subscribe"}\n')
                events = stream.makefile("rb")
                first = json.loads(await asyncio.to_thread(events.readline))
                assert first["ok"] is True
                assert first["snapshot"]["role"] == "STANDBY"
                run = await asyncio.to_thread(ask_socket, proxy.path, {"op": "run", "job": "ok"})
                run_id = run[0]["run_id"]
                seen: list[dict[str, Any]] = []
                while not any(
                    e.get("event") == "run_finished" and e["data"].get("id") == run_id
                    for e in seen
                ):
                    seen.append(json.loads(await asyncio.to_thread(events.readline)))
                assert any(e["event"] == "run_started" for e in seen)
        finally:
            await proxy.close()
        assert not proxy.path.exists()


async def test_a_standby_without_a_leader_says_so(tmp_path: Path) -> None:
    leaders: list[FakeLeader | None] = [None]

    async def find() -> FakeLeader | None:
        return leaders[0]

    proxy = await serve_proxy(tmp_path / "standby.sock", find, {"host": this_host(), "pid": 1})
    try:
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "status"}))[0]
        assert answer["ok"] is False and answer["error"].startswith("no leader")
        # a lapsed lease is no leader either
        leaders[0] = FakeLeader("x:1:a", this_host(), 1, "/nowhere.sock", 3, live=False)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "pause"}))[0]
        assert answer["ok"] is False and answer["error"].startswith("no leader")
        # a leader on another host: named, since its Unix socket is out of reach
        leaders[0] = FakeLeader("far:9:b", "far-away-host", 99, "/v/Logs/keeper-99.sock", 4)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "jobs"}))[0]
        assert answer["ok"] is False
        assert "pid 99 on far-away-host" in answer["error"]
        # a leader whose socket is gone (killed a moment ago)
        leaders[0] = FakeLeader("x:1:a", this_host(), 1, str(tmp_path / "gone.sock"), 5)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "jobs"}))[0]
        assert answer["ok"] is False and "does not answer" in answer["error"]
    finally:
        await proxy.close()


async def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI as a child process, without blocking this loop (it serves the keeper)."""
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
    child = await asyncio.create_subprocess_exec(
        str(CLI), *args, env={**env, "NO_COLOR": "1"}, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_the_cli_reaches_the_leader_named_in_cluster_json_or_a_standby(
    tmp_path: Path,
) -> None:
    """Keepers in cluster mode hold no flock: `--status`, `jobs`, `run`, `pause` and
    `resume` find the leader through Logs/cluster.json, else a live standby's socket."""
    leader_vault = plain_vault(tmp_path, "leader")
    shared = plain_vault(tmp_path, "shared")  # the vault the CLI is pointed at
    async with leader_keeper(leader_vault) as leader_socket:
        write_cluster_file(
            shared, CLUSTER, 3, "h:1:a", this_host(), os.getpid(), str(leader_socket)
        )
        code, out, err = await cli("--status", "--json", "--vault", str(shared))
        assert code == 0, err
        assert json.loads(out)["keeper"]["pid"] == os.getpid()
        code, out, err = await cli("run", "ok", "--wait", "--vault", str(shared))
        assert code == 0, err
        code, out, err = await cli("pause", "slow", "--vault", str(shared))
        assert (code, err) == (0, ""), err
        code, out, err = await cli("jobs", "--json", "--vault", str(shared))
        assert code == 0, err
        assert {j["name"]: j["paused"] for j in json.loads(out)} == {"ok": False, "slow": True}
        code, out, err = await cli("resume", "slow", "--vault", str(shared))
        assert code == 0, err

        # The leader named is dead (a failover): a live standby on this host forwards.
        leader = FakeLeader("h:1:a", this_host(), os.getpid(), str(leader_socket), 4)

        async def find() -> FakeLeader:
            return leader

        write_cluster_file(shared, CLUSTER, 3, "h:0:z", this_host(), dead_pid(), "/gone.sock")
        proxy = await serve_proxy(keeper_socket(shared), find)
        try:
            code, out, err = await cli("--status", "--json", "--vault", str(shared))
            assert code == 0, err
            keeper = json.loads(out)["keeper"]
            assert (keeper["pid"], keeper["role"], keeper["epoch"]) == (os.getpid(), "STANDBY", 4)
            assert keeper["leader"]["socket"] == str(leader_socket)
            code, out, err = await cli("run", "ok", "--wait", "--vault", str(shared))
            assert code == 0, err
        finally:
            await proxy.close()

    # Nothing runs here and the leader is on another host: said, not a local run.
    write_cluster_file(shared, CLUSTER, 5, "far:7:b", "far-away-host", 7, "/v/keeper-7.sock")
    code, out, err = await cli("--status", "--vault", str(shared))
    assert "the cluster's leader is pid 7 on far-away-host" in out + err, (code, out, err)
    code, out, err = await cli("pause", "slow", "--vault", str(shared))
    assert "keeper pid 7 runs on far-away-host" in out, (code, out, err)


# ---- the console: LEADER / STANDBY in the header, the Workers screen -----------------


def test_the_header_names_the_role_and_epoch_only_in_cluster_mode(tmp_path: Path) -> None:
    clock = Clock(UTC)
    model = Model(tmp_path / "vault")
    model.state = "RUNNING"
    plain = HeaderBar.compose_line(model, clock, 100).plain
    assert "LEADER" not in plain and "STANDBY" not in plain
    leading = {"state": "RUNNING", "role": "LEADER", "epoch": 9, "cluster": "ops"}
    model.load_snapshot(leading, clock.now())
    assert " LEADER epoch 9 " in HeaderBar.compose_line(model, clock, 100).plain
    assert " LEADER epoch 9 " in HeaderBar.compose_line(model, clock, 80).plain
    # Whatever a keeper of another version sends, the header stays whole.
    for odd in ({"role": "OBSERVER"}, {"role": "STANDBY", "epoch": "x"}, {"role": 3}, {}):
        model.load_snapshot({"state": "RUNNING", **odd}, clock.now())
        line = HeaderBar.compose_line(model, clock, 100).plain
        assert "epoch" not in line and "OBSERVER" not in line


async def test_a_console_through_a_standby_shows_standby_and_lists_the_workers(
    tmp_path: Path, pg_dsn: str
) -> None:
    await busy_cluster(pg_dsn)
    leader_vault = plain_vault(tmp_path, "leader")
    vault = cluster_vault(tmp_path, pg_dsn, "shared")
    (vault / "watchkeeper.toml").write_text(
        (vault / "watchkeeper.toml").read_text() + textwrap.dedent(KEEPER_CONFIG)
    )
    async with leader_keeper(leader_vault) as leader_socket:
        leader = FakeLeader("h:1:a", this_host(), os.getpid(), str(leader_socket), 12)

        async def find() -> FakeLeader:
            return leader

        write_cluster_file(vault, CLUSTER, 12, "h:0:z", this_host(), dead_pid(), "/gone.sock")
        proxy = await serve_proxy(keeper_socket(vault), find)
        try:
            config = load_config(vault / "watchkeeper.toml")
            client = await asyncio.to_thread(SocketClient, vault)
            app = make_app(config, client, theme_dirs=[shipped_dir()])
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot_until(pilot, lambda: app.keeper_started and "STANDBY" in header(app))
                assert " STANDBY epoch 12 " in header(app)
                await pilot_until(pilot, lambda: "Workers" in screen_text(app))

                await pilot.press("W")
                await pilot_until(pilot, lambda: isinstance(app.screen, WorkersScreen))
                screen = app.screen
                assert isinstance(screen, WorkersScreen)
                await pilot_until(pilot, lambda: "beta:4242:w1" in screen_text(app))
                text = screen_text(app)
                assert "leader alpha pid 100 · epoch 7" in text
                assert "gpu,linux" in text and "crunch:r-1" in text
                lapsed = next(line for line in text.splitlines() if "beta:4343:w2" in line)
                assert "LOST" in lapsed
                assert "wk.ops.gpu+linux" in text
                await pilot.press("escape")
                await pilot_until(pilot, lambda: not isinstance(app.screen, WorkersScreen))
                await pilot.press("q")
                await pilot_until(pilot, lambda: app.closed)
        finally:
            await proxy.close()


async def test_without_a_cluster_the_console_offers_no_workers_key(tmp_path: Path) -> None:
    vault = plain_vault(tmp_path, "plain")
    async with console(vault) as (app, pilot, _):
        await pilot_until(pilot, lambda: "Quit" in screen_text(app))
        assert "Workers" not in screen_text(app)
        assert app.main.check_action("workers", ()) is False
        assert not [c for c in screen_commands(app.main) if c.title == "Workers"]
        await pilot.press("W")
        await pilot.pause()
        assert app.screen is app.main
        await pilot.press("q")


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


def test_with_no_cluster_keeper_here_run_and_the_console_refuse_instead_of_running_alone(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A run or console keeper outside the leader would escape the lease (and the
    cluster's history): in cluster mode they reach a keeper of the cluster or say why."""
    vault = cluster_vault(tmp_path, pg_dsn)

    result = run_cli("run", "tick", "--vault", str(vault))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "cannot run tick: no keeper of cluster ops runs on this host" in result.stderr
    assert not list((vault / "Logs").glob("history/*.jsonl"))
    with pytest.raises(ControlUnavailable, match="no keeper of cluster ops runs on this host"):
        connect(load_config(vault / "watchkeeper.toml"))
    assert not (vault / "Logs" / ".watchkeeper.lock").exists() or holder(vault) is None
