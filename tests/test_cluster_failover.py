"""Cluster keepers as real `watchkeeper --daemon` processes on one vault and a real
PostgreSQL: one leads, a killed or frozen leader is replaced within lease + 5 s, a frozen
one that wakes fires nothing, a database restart stops firing until it is back, and no
(job, slot) ever fires twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_daemons import TAKEOVER, Cluster, cluster_config, fired_by
from conftest import CLI, final_records, history_lines, run_cli, wait_for
from pgserver import PgServer


@pytest.fixture
def cluster(make_vault: Any, pg_dsn: str) -> Iterator[Cluster]:
    vault = make_vault(cluster_config(pg_dsn))
    made = Cluster(vault, pg_dsn)
    yield made
    made.stop_all()


def ask_status(path: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b'{"op": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer



def test_database_down_at_start_is_exit_2_with_the_dsn_masked(
    make_vault: Any, tmp_path: Path
) -> None:
    dsn = f"postgresql://wk:s3cret-pw@/wk?host={tmp_path / 'nowhere'}"
    vault = make_vault(cluster_config(dsn))
    result = run_cli("--daemon", "--vault", str(vault), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "cluster database" in result.stderr and "unreachable" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_two_keepers_on_one_vault_exactly_one_leads(cluster: Cluster) -> None:
    first, second = cluster.start(), cluster.start()
    leader = wait_for(cluster.leader)
    assert isinstance(leader, tuple)
    epoch, pid = leader
    assert pid in (first.pid, second.pid)
    standby = second if pid == first.pid else first
    wait_for(lambda: fired_by(cluster, epoch) >= 3)
    record = json.loads((cluster.vault / "Logs" / "cluster.json").read_text())
    assert record["epoch"] == epoch and record["leader"]["pid"] == pid
    assert record["leader"]["socket"].endswith(f"keeper-{pid}.sock")
    status = ask_status(record["leader"]["socket"])["status"]
    assert (status["role"], status["epoch"], status["pid"]) == ("LEADER", epoch, pid)
    keepers = cluster.query("SELECT pid, socket FROM watchkeeper.keepers ORDER BY pid")
    assert {row[0] for row in keepers} == {first.pid, second.pid}
    assert "LEADER" not in cluster.output(standby.pid)
    assert {row[2] for row in cluster.slot_rows()} == {epoch}
    cluster.assert_no_slot_fired_twice()
    # SIGTERM: drained and the lease released on the way out, not left to lapse.
    leading = first if pid == first.pid else second
    leading.send_signal(signal.SIGTERM)
    assert leading.wait(timeout=30) == 0
    released = cluster.query(
        "SELECT epoch > %s OR expires_at <= clock_timestamp() FROM watchkeeper.leader", epoch
    )
    assert released == [(True,)]
    again = wait_for(lambda: (found := cluster.leader()) and found[0] > epoch and found)
    assert again == (epoch + 1, standby.pid)


def test_kill_9_the_leader_and_the_standby_leads_within_lease_plus_5s(cluster: Cluster) -> None:
    cluster.start()
    cluster.start()
    leader = wait_for(cluster.leader)
    assert isinstance(leader, tuple)
    epoch, pid = leader
    wait_for(lambda: fired_by(cluster, epoch) >= 3)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def new_leader() -> tuple[int, int] | None:
        found = cluster.leader()
        return found if found is not None and found[0] > epoch else None

    taken = wait_for(new_leader, timeout=TAKEOVER + 10)
    took = time.monotonic() - killed
    assert isinstance(taken, tuple)
    assert took <= TAKEOVER, f"took over after {took:.1f}s"
    new_epoch, new_pid = taken
    assert new_pid != pid and new_epoch == epoch + 1
    wait_for(lambda: fired_by(cluster, new_epoch) >= 3)
    cluster.assert_no_slot_fired_twice()
    # Every run ends in exactly one final record: the dead leader's run in flight, if
    # any, closed by the new one, and nothing closed twice.
    wait_for(cluster.each_run_has_one_final_record)


def test_a_frozen_leader_wakes_fenced_fires_nothing_and_stands_by(cluster: Cluster) -> None:
    first, second = cluster.start(), cluster.start()
    leader = wait_for(cluster.leader)
    assert isinstance(leader, tuple)
    epoch, pid = leader
    wait_for(lambda: fired_by(cluster, epoch) >= 2)
    os.kill(pid, signal.SIGSTOP)
    try:

        def new_leader() -> tuple[int, int] | None:
            found = cluster.leader()
            return found if found is not None and found[0] > epoch else None

        taken = wait_for(new_leader, timeout=TAKEOVER + 10)
        assert isinstance(taken, tuple)
        new_epoch, new_pid = taken
        took_over = cluster.query(
            "SELECT acquired_at FROM watchkeeper.leader WHERE epoch = %s", new_epoch
        )[0][0]
        wait_for(lambda: fired_by(cluster, new_epoch) >= 2)
        # The new leader frozen in turn: the slots coming due are nobody's but the old
        # leader's to take when it wakes, and only the fence (its deadline in wall time,
        # the epoch in the database) keeps it from firing them.
        os.kill(new_pid, signal.SIGSTOP)
        wait_for(
            lambda: cluster.query(
                "SELECT clock_timestamp() - max(fired_at) > interval '1.5 s' FROM watchkeeper.slots"
            )
            == [(True,)]
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        wait_for(lambda: "STANDBY" in cluster.output(pid))
    finally:
        os.kill(new_pid, signal.SIGCONT)
    output = cluster.output(pid)
    assert "NO LONGER LEADER" in output and "leadership lost" in output
    late = cluster.query(
        "SELECT count(*) FROM watchkeeper.slots WHERE epoch = %s AND fired_at >= %s",
        epoch,
        took_over,
    )
    assert late == [(0,)]
    # Either it never tried (its deadline had passed) or its claim was refused and recorded.
    rejected = cluster.query("SELECT epoch FROM watchkeeper.rejections")
    assert all(row[0] in (epoch, new_epoch) for row in rejected)
    # Standing by for real: whoever leads now, when it stops cleanly the other takes over.
    current = wait_for(lambda: (found := cluster.leader()) and found[0] >= new_epoch and found)
    assert isinstance(current, tuple)
    wait_for(lambda: fired_by(cluster, current[0]) >= 2)
    os.kill(current[1], signal.SIGTERM)
    other = first.pid if current[1] == second.pid else second.pid
    again = wait_for(lambda: (found := cluster.leader()) and found[0] > current[0] and found)
    assert again == (current[0] + 1, other)
    wait_for(lambda: fired_by(cluster, current[0] + 1) >= 2)
    cluster.assert_no_slot_fired_twice()


def test_a_database_restart_stops_firing_until_it_is_back(
    make_vault: Any, pg_server: PgServer
) -> None:
    dsn = pg_server.new_database()
    vault = make_vault(cluster_config(dsn, jobs=4))
    cluster = Cluster(vault, dsn)
    try:
        keeper = cluster.start()
        leader = wait_for(cluster.leader)
        assert isinstance(leader, tuple)
        epoch = leader[0]
        wait_for(lambda: fired_by(cluster, epoch) >= 8)
        pg_server.stop()
        down = time.time()
        wait_for(lambda: "cannot prove leadership" in cluster.output(keeper.pid))
        before = len(final_records(vault))
        time.sleep(1.0)  # 16 slots come due meanwhile: none may start
        assert len(final_records(vault)) == before
        up = time.time()
        pg_server.start()
        wait_for(lambda: "leadership proven again" in cluster.output(keeper.pid) or None)
        wait_for(lambda: (found := cluster.leader()) and fired_by(cluster, found[0]) >= 12)
        output = cluster.output(keeper.pid)
        assert "slot(s) not fired" in output
        started_meanwhile = [
            record
            for record in final_records(vault).values()
            if record["trigger"] == "schedule" and down + 0.5 < _seconds(record["startedAt"]) < up
        ]
        assert not started_meanwhile
        cluster.assert_no_slot_fired_twice()
    finally:
        cluster.stop_all()


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_run_in_flight_on_a_worker_is_adopted_by_the_new_leader(
    make_vault: Any, pg_dsn: str, tmp_path: Path
) -> None:
    # The run goes on until the new leader leads: in flight across the failover for sure.
    go_on = tmp_path / "go-on"
    wait = f"while [ ! -e {go_on} ]; do sleep 0.02; done; echo slow-done"
    config = cluster_config(pg_dsn, jobs=0) + (
        f'\n[jobs.slow]\ncommand = ["sh", "-c", "{wait}"]\nevery = "1s"\nruns_on = "any"\n'
    )
    vault = make_vault(config)
    cluster = Cluster(vault, pg_dsn)
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
    worker = subprocess.Popen(
        [str(CLI), "worker", "--vault", str(vault), "--heartbeat", "0.5"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(vault.parent / "worker.out").open("w"),
    )
    try:
        cluster.start()
        cluster.start()
        leader = wait_for(cluster.leader)
        assert isinstance(leader, tuple)
        epoch, pid = leader

        def on_the_worker() -> str | None:
            rows = cluster.query(
                "SELECT run_id FROM watchkeeper.remote_runs WHERE state = 'running'"
            )
            return str(rows[0][0]) if rows else None

        run_id = wait_for(on_the_worker, timeout=60)
        os.kill(pid, signal.SIGKILL)
        taken = wait_for(
            lambda: (found := cluster.leader()) and found[0] > epoch and found,
            timeout=TAKEOVER + 10,
        )
        assert isinstance(taken, tuple)
        go_on.write_text("")

        def recorded() -> str | None:
            rows = cluster.query(
                "SELECT status FROM watchkeeper.runs WHERE run_id = %s AND status <> 'running'",
                run_id,
            )
            return str(rows[0][0]) if rows else None

        assert wait_for(recorded, timeout=60) == "success"
        wait_for(
            lambda: [
                line
                for line in history_lines(vault)
                if line["id"] == run_id and line["status"] != "running"
            ]
        )
        finals = [
            line
            for line in history_lines(vault)
            if line["id"] == run_id and line["status"] != "running"
        ]
        assert [line["status"] for line in finals] == ["success"]
        assert "adopted from the former leader" in cluster.output(taken[1])
        cluster.assert_no_slot_fired_twice()
        wait_for(cluster.each_run_has_one_final_record)
    finally:
        cluster.stop_all()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
