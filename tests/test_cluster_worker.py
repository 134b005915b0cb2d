"""Runs on workers (issue 16): a real PostgreSQL, real `watchkeeper worker` processes
through the CLI, the leader's RemoteExecutor on the test's loop, real process groups."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import CLI, PATIENCE, pid_alive

from watchkeeper.core.cluster import queue
from watchkeeper.core.cluster.remote import RemoteExecutor, RemoteRun, RemoteStarted
from watchkeeper.core.cluster.routing import RoutingExecutor
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.runner import LocalExecutor, RunOutcome, RunSpec, Spawned

CLUSTER = "t"
HEARTBEAT = 0.5
LAPSE = 3.0
# A leftover a run left behind: its pid on the first line, then it sleeps.
GRANDCHILD = "sleep 300 & echo $!; wait"


def vault_with_cluster(tmp_path: Path, dsn: str) -> Path:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "watchkeeper.toml").write_text(f'[cluster]\ndatabase = "{dsn}"\nname = "{CLUSTER}"\n')
    return vault


def rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


async def until(condition: Callable[[], object], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout}s: {condition}")
        await asyncio.sleep(0.02)


class Workers:
    """`watchkeeper worker` processes of one vault, each waited for until registered."""

    def __init__(self, vault: Path, dsn: str) -> None:
        self.vault, self.dsn = vault, dsn
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen(
            [str(CLI), "worker", "--vault", str(self.vault), "--heartbeat", str(HEARTBEAT), *args],
            stdin=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + PATIENCE
        while True:
            assert proc.poll() is None, f"worker exited {proc.returncode}"
            try:
                found = rows(
                    self.dsn,
                    "SELECT worker_id FROM watchkeeper.workers WHERE pid = %s",
                    (proc.pid,),
                )
            except psycopg.errors.UndefinedTable:
                found = []
            if found:
                return proc, str(found[0][0])
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(tmp_path: Path, pg_dsn: str) -> Iterator[Workers]:
    found = Workers(vault_with_cluster(tmp_path, pg_dsn), pg_dsn)
    try:
        yield found
    finally:
        found.stop()


class Leader:
    """The keeper's side, reduced to what the Executor seam asks of it."""

    def __init__(self, dsn: str, lapse: float = LAPSE) -> None:
        self.started: dict[str, asyncio.Future[Any]] = {}
        self.executor = RemoteExecutor(self.deliver, dsn, CLUSTER, lapse=lapse, poll=0.2)

    def deliver(self, batch: list[tuple[Any, Any]]) -> None:
        for token, result in batch:
            self.started[token].set_result(result)

    def submit(self, spec: RunSpec) -> asyncio.Future[Any]:
        self.started[spec.run_id] = asyncio.get_running_loop().create_future()
        self.executor.submit([(spec.run_id, spec)])
        return self.started[spec.run_id]

    async def start(self, spec: RunSpec) -> tuple[RemoteRun, list[bytes]]:
        started = await asyncio.wait_for(self.submit(spec), PATIENCE)
        assert isinstance(started, RemoteStarted), started
        output: list[bytes] = []
        return self.executor.watch(spec, started, output.append), output


@pytest.fixture
async def leader(pg_dsn: str) -> Any:
    # As a keeper does at its start (core/cluster/daemon.py).
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await ensure_schema(conn, also=queue.apply_schema)
    found = Leader(pg_dsn)
    try:
        yield found
    finally:
        await found.executor.close()


def spec(run_id: str, script: str, runs_on: tuple[str, ...] = ("any",), **fields: Any) -> RunSpec:
    env = {"PATH": os.environ["PATH"], "WK_GREETING": "hello from the spec"}
    return RunSpec(
        run_id, ["/bin/sh", "-c", script], env, Path("/tmp"), runs_on=runs_on, job="j", **fields
    )


def text(output: list[bytes]) -> str:
    return b"".join(output).decode()


def first_pid(output: list[bytes]) -> Callable[[], int | None]:
    def pid() -> int | None:
        line = text(output).split("\n", 1)
        return int(line[0]) if len(line) > 1 else None

    return pid


async def wait_done(run: RemoteRun, timeout: float = PATIENCE) -> RunOutcome:
    return await asyncio.wait_for(asyncio.shield(run.done), timeout)


def test_queues_per_label_set() -> None:
    assert queue.queue_for("c", ["linux", "gpu"]) == "wk.c.gpu+linux"
    assert queue.queue_for("c", ["any"]) == "wk.c.any"
    assert queue.queues_of("c", ["linux", "gpu"]) == [
        "wk.c.any",
        "wk.c.gpu",
        "wk.c.linux",
        "wk.c.gpu+linux",
    ]


async def test_output_lives_and_the_end_reach_the_leader(
    workers: Workers, leader: Leader, tmp_path: Path, pg_dsn: str
) -> None:
    _, worker_id = workers.start()
    go_on = tmp_path / "go-on"
    script = (
        f'echo "$WK_GREETING"; while [ ! -e {go_on} ]; do sleep 0.02; done; echo bye >&2; exit 3'
    )
    run, output = await leader.start(spec("r-out", script))
    assert run.worker_id == worker_id and run.host == socket.gethostname()
    assert run.pid is not None and pid_alive(run.pid)
    # The first line reaches the leader while the run is still going.
    began = time.monotonic()
    await until(lambda: text(output) == "hello from the spec\n")
    assert time.monotonic() - began < 1.0
    assert not run.done.done()
    go_on.touch()
    outcome = await wait_done(run)
    assert text(output) == "hello from the spec\nbye\n"
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failure", 3, "exit code 3")
    assert outcome.duration_ms > 0
    # Once the leader has it, neither the output nor the run's environment stays behind.
    await until(
        lambda: (
            rows(
                pg_dsn,
                "SELECT (SELECT count(*) FROM watchkeeper.output), spec ? 'env'"
                " FROM watchkeeper.remote_runs",
            )
            == [(0, False)]
        )
    )


async def test_cancel_ends_the_whole_group_on_the_worker(workers: Workers, leader: Leader) -> None:
    workers.start()
    run, output = await leader.start(spec("r-cancel", GRANDCHILD))
    await until(first_pid(output))
    grandchild = first_pid(output)()
    assert grandchild is not None and pid_alive(grandchild)
    run.stop("cancelled", "cancelled by the test")
    outcome = await wait_done(run)
    assert (outcome.status, outcome.error) == ("cancelled", "cancelled by the test")
    await until(lambda: not pid_alive(grandchild))


async def test_timeout_ends_the_group_with_kill_after_the_grace(
    workers: Workers, leader: Leader
) -> None:
    workers.start()
    # TERM is ignored by the shell and its sleep: only the KILL after kill_grace ends them.
    script = f"trap '' TERM; {GRANDCHILD}"
    run, output = await leader.start(spec("r-timeout", script, timeout=0.5, kill_grace=0.5))
    await until(first_pid(output))
    grandchild = first_pid(output)()
    assert grandchild is not None
    outcome = await wait_done(run)
    assert (outcome.status, outcome.error) == ("timeout", "timed out after 500ms")
    assert outcome.duration_ms >= 1000  # the timeout, then the grace
    assert not pid_alive(grandchild)


async def test_a_worker_killed_mid_run_ends_interrupted_and_its_group_ends(
    workers: Workers, leader: Leader
) -> None:
    proc, worker_id = workers.start()
    run, output = await leader.start(spec("r-kill", GRANDCHILD, kill_grace=0.5))
    await until(first_pid(output))
    grandchild = first_pid(output)()
    assert grandchild is not None and run.pid is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    outcome = await wait_done(run)
    assert time.monotonic() - killed < LAPSE + 2.0
    assert outcome.status == "interrupted"
    assert outcome.error is not None and worker_id in outcome.error
    # The guard learnt of the worker's death and ended the group.
    await until(lambda: not pid_alive(grandchild) and not pid_alive(run.pid or 0))


async def test_a_claimed_run_never_runs_twice(
    workers: Workers, leader: Leader, tmp_path: Path, pg_dsn: str
) -> None:
    workers.start()
    workers.start("--labels", "gpu")
    marks = tmp_path / "marks"
    go_on = tmp_path / "go-on"
    script = f'echo "$WATCHKEEPER_RUN" >> {marks}; while [ ! -e {go_on} ]; do sleep 0.02; done'
    runs = []
    for number in range(6):
        job = spec(f"r-{number}", script)
        job.env["WATCHKEEPER_RUN"] = job.run_id
        runs.append(await leader.start(job))
    # The same runs' jobs once more, while both workers are idle enough to take them.
    app = queue.make_app(pg_dsn)
    async with app.open_async():
        for number in range(6):
            await queue.defer(app, queue.queue_for(CLUSTER, ["any"]), CLUSTER, f"r-{number}")
        await until(
            lambda: (
                rows(pg_dsn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
                == [(0,)]
            )
        )
    go_on.touch()
    for run, _ in runs:
        assert (await wait_done(run)).status == "success"
    assert sorted(marks.read_text().split()) == sorted(f"r-{number}" for number in range(6))


async def test_runs_go_to_workers_with_the_labels_they_ask_for(
    workers: Workers, leader: Leader
) -> None:
    workers.start()
    _, gpu = workers.start("--labels", "gpu,linux")
    for number in range(3):
        run, _ = await leader.start(spec(f"r-gpu-{number}", "true", runs_on=("gpu",)))
        assert run.worker_id == gpu
        assert (await wait_done(run)).status == "success"


async def test_routing_keeps_keeper_runs_here(workers: Workers, pg_dsn: str) -> None:
    workers.start()
    results: dict[str, asyncio.Future[Any]] = {}

    def deliver(batch: list[tuple[Any, Any]]) -> None:
        for token, result in batch:
            results[token].set_result(result)

    routing = RoutingExecutor(LocalExecutor(deliver), RemoteExecutor(deliver, pg_dsn, CLUSTER))
    loop = asyncio.get_running_loop()
    here, away = spec("r-here", "true", runs_on=("keeper",)), spec("r-away", "true")
    for job in (here, away):
        results[job.run_id] = loop.create_future()
    try:
        routing.submit([(here.run_id, here), (away.run_id, away)])
        local = await asyncio.wait_for(results["r-here"], PATIENCE)
        remote = await asyncio.wait_for(results["r-away"], PATIENCE)
        assert isinstance(local, Spawned) and isinstance(remote, RemoteStarted)
        for job, started in ((here, local), (away, remote)):
            outcome = await asyncio.wait_for(
                routing.watch(job, started, lambda _: None).done, PATIENCE
            )
            assert outcome.status == "success"
    finally:
        routing.shutdown()
        await routing.remote.close()


async def test_a_command_that_cannot_start_is_delivered_as_an_error(
    workers: Workers, leader: Leader
) -> None:
    workers.start()
    job = RunSpec("r-missing", ["/no/such/program"], {}, Path("/tmp"), runs_on=("any",))
    result = await asyncio.wait_for(leader.submit(job), PATIENCE)
    assert isinstance(result, OSError) and "No such file" in str(result)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
    )


def test_worker_without_cluster_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "watchkeeper.toml").write_text("")
    result = run_cli("worker", "--vault", str(tmp_path))
    assert result.returncode == 2
    assert "has no [cluster] table" in result.stderr and "Traceback" not in result.stderr


def test_worker_with_the_database_down_is_exit_2_password_masked(tmp_path: Path) -> None:
    missing = tmp_path / "no-server"
    missing.mkdir()
    dsn = f"postgresql://wk:s3cr3t-pw@/db?host={missing}"
    (tmp_path / "watchkeeper.toml").write_text(f'[cluster]\ndatabase = "{dsn}"\n')
    result = run_cli("worker", "--vault", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "unreachable" in result.stderr and "wk:***@" in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_worker_refuses_bad_labels(tmp_path: Path, pg_dsn: str) -> None:
    vault = vault_with_cluster(tmp_path, pg_dsn)
    result = run_cli("worker", "--vault", str(vault), "--labels", "gpu,no way")
    assert result.returncode == 2 and "--labels" in result.stderr


def test_service_install_writes_a_worker_unit_systemd_accepts(tmp_path: Path, pg_dsn: str) -> None:
    vault = vault_with_cluster(tmp_path, pg_dsn)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(
        [
            str(CLI),
            "service",
            "install",
            "--worker",
            "--labels",
            "gpu",
            "--concurrency",
            "2",
            "--dry-run",
            "--vault",
            str(vault),
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("unit file: "))
    assert "/watchkeeper-worker-vault-" in lines[first]
    unit = lines[first + 1 : lines.index("would run:")]
    assert f"ExecStart={CLI} worker --vault {vault.resolve()} --labels gpu --concurrency 2" in unit
    unit_file = tmp_path / "watchkeeper-worker-test.service"
    unit_file.write_text("\n".join(unit).rstrip() + "\n")
    check = subprocess.run(
        ["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    # The keeper's own unit is still what `service install` writes without --worker.
    keeper = run_cli("service", "install", "--dry-run", "--vault", str(vault))
    assert f"ExecStart={CLI} --daemon --vault {vault.resolve()}" in keeper.stdout
    refused = run_cli("service", "install", "--labels", "gpu", "--dry-run", "--vault", str(vault))
    assert refused.returncode == 2 and "go with --worker" in refused.stderr


async def test_a_run_no_worker_took_yet_is_withdrawn_at_once(pg_dsn: str, leader: Leader) -> None:
    waiting = leader.submit(spec("r-queued", "true", runs_on=("nobody-has-this",)))
    await until(lambda: rows(pg_dsn, "SELECT count(*) FROM watchkeeper.remote_runs") == [(1,)])
    leader.executor.cancel("r-queued", "cancelled", "withdrawn by the test")
    started = await asyncio.wait_for(waiting, PATIENCE)
    assert isinstance(started, RemoteStarted) and started.pid is None
    run = leader.executor.watch(spec("r-queued", "true"), started, lambda _: None)
    outcome = await wait_done(run)
    assert (outcome.status, outcome.error) == ("cancelled", "withdrawn by the test")


async def test_a_new_leader_adopts_a_run_in_flight(
    workers: Workers, leader: Leader, pg_dsn: str, tmp_path: Path
) -> None:
    workers.start()
    go_on = tmp_path / "go-on"
    script = f"echo before; while [ ! -e {go_on} ]; do sleep 0.02; done; echo after"
    run, output = await leader.start(spec("r-adopted", script))
    await until(lambda: text(output) == "before\n")
    await leader.executor.close()  # the former leader is gone
    successor = Leader(pg_dsn)
    try:
        successor.started["token"] = asyncio.get_running_loop().create_future()
        specs = await successor.executor.adopt([("token", "r-adopted"), ("t2", "r-unknown")])
        assert list(specs) == ["r-adopted"] and specs["r-adopted"].argv[-1] == script
        started = await asyncio.wait_for(successor.started["token"], PATIENCE)
        assert isinstance(started, RemoteStarted) and started.pid == run.pid
        seen: list[bytes] = []
        adopted = successor.executor.watch(specs["r-adopted"], started, seen.append)
        go_on.touch()
        assert (await wait_done(adopted)).status == "success"
        assert text(seen) == "after\n"
    finally:
        await successor.executor.close()


async def test_a_run_outlives_a_database_restart(
    workers: Workers, leader: Leader, pg_server: Any, tmp_path: Path
) -> None:
    workers.start()
    go_on = tmp_path / "go-on"
    script = f"echo before; while [ ! -e {go_on} ]; do sleep 0.02; done; echo after"
    run, output = await leader.start(spec("r-restart", script))
    await until(lambda: text(output) == "before\n")
    await asyncio.to_thread(pg_server.restart)
    go_on.touch()
    outcome = await wait_done(run)
    assert outcome.status == "success", outcome
    assert text(output) == "before\nafter\n"
    # The worker serves on: the next run, after a heartbeat lapse's worth of time.
    await asyncio.sleep(LAPSE)
    later, _ = await leader.start(spec("r-after-restart", "true"))
    assert (await wait_done(later)).status == "success"


async def test_a_stopped_worker_ends_its_runs_as_interrupted(
    workers: Workers, leader: Leader
) -> None:
    proc, worker_id = workers.start()
    run, output = await leader.start(spec("r-stopped", GRANDCHILD, kill_grace=0.5))
    await until(first_pid(output))
    grandchild = first_pid(output)()
    assert grandchild is not None
    proc.send_signal(signal.SIGTERM)
    outcome = await wait_done(run)
    assert (outcome.status, outcome.error) == ("interrupted", f"worker {worker_id} stopped")
    assert not pid_alive(grandchild)
    assert await asyncio.to_thread(proc.wait, PATIENCE) == 0


async def test_a_job_whose_worker_died_before_the_claim_is_queued_again(
    workers: Workers, leader: Leader, pg_dsn: str
) -> None:
    waiting = leader.submit(spec("r-orphan", "true"))
    await until(lambda: rows(pg_dsn, "SELECT count(*) FROM procrastinate_jobs") == [(1,)])
    # A worker takes the job and dies at once, before it claims the run: procrastinate's
    # own calls, as a worker makes them, with a heartbeat that never comes again.
    rows(
        pg_dsn,
        "SELECT procrastinate_fetch_job_v2(%s, (SELECT worker_id FROM"
        " procrastinate_register_worker_v1()))",
        ([queue.queue_for(CLUSTER, ["any"])],),
    )
    rows(
        pg_dsn,
        "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' RETURNING 1",
    )
    _, worker_id = workers.start()
    started = await asyncio.wait_for(waiting, PATIENCE)
    assert isinstance(started, RemoteStarted) and started.worker_id == worker_id
    run = leader.executor.watch(spec("r-orphan", "true"), started, lambda _: None)
    assert (await wait_done(run)).status == "success"
