"""Operating a cluster through the real CLI against real `watchkeeper --daemon` keepers,
real workers and a real PostgreSQL: what a remote run's record says, cancelling a run no
worker has taken, pause/resume and requeue with no keeper on this host."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_daemons import Cluster, cluster_config
from conftest import final_records, history_lines, run_cli, wait_for

REMOTE_JOB = '\n[jobs.far]\ncommand = ["true"]\nevery = "1s"\nruns_on = "any"\n'


@pytest.fixture
def remote(make_vault: Any, pg_dsn: str) -> Iterator[Cluster]:
    """One leader whose only job runs on workers, every second."""
    made = Cluster(make_vault(cluster_config(pg_dsn, jobs=0) + REMOTE_JOB), pg_dsn)
    yield made
    made.stop_all()


def test_a_remote_runs_record_names_the_workers_host(remote: Cluster) -> None:
    assert socket.gethostname() != "far-host"
    remote.start()
    remote.start_worker(host="far-host")

    def ended() -> list[dict[str, Any]]:
        return [r for r in final_records(remote.vault).values() if r["status"] == "success"]

    record = wait_for(ended, timeout=60)
    assert isinstance(record, list)
    assert record[0]["host"] == "far-host", record[0]

    def in_the_database() -> list[tuple[Any, ...]]:
        # Written a transaction after the JSONL export's line.
        return remote.query(
            "SELECT host, record->>'host' FROM watchkeeper.runs WHERE run_id = %s"
            " AND status <> 'running'",
            record[0]["id"],
        )

    assert wait_for(in_the_database) == [("far-host", "far-host")]


def test_cancel_withdraws_a_remote_run_no_worker_has_taken(remote: Cluster) -> None:
    remote.start()  # and no worker at all: the run waits in its queue

    def queued() -> str | None:
        rows = remote.query("SELECT run_id FROM watchkeeper.remote_runs WHERE state = 'queued'")
        return str(rows[0][0]) if rows else None

    run_id = wait_for(queued, timeout=60)
    assert isinstance(run_id, str)
    result = run_cli("cancel", run_id, "--vault", str(remote.vault))
    assert result.returncode == 0, result.stderr
    assert f"cancelled run {run_id}" in result.stdout

    def closed() -> dict[str, Any] | None:
        record = final_records(remote.vault).get(run_id)
        return record if record and record["status"] != "running" else None

    record = wait_for(closed, timeout=10)
    assert isinstance(record, dict)
    assert record["status"] == "cancelled" and record["host"] == socket.gethostname()
    finals = [line for line in history_lines(remote.vault) if line["id"] == run_id]
    assert [line["status"] for line in finals] == ["running", "cancelled"]
    state = remote.query(
        "SELECT state, status FROM watchkeeper.remote_runs WHERE run_id = %s", run_id
    )
    assert state == [("ended", "cancelled")]


def test_pause_and_resume_with_no_keeper_write_the_clusters_database(
    make_vault: Any, pg_dsn: str
) -> None:
    cluster = Cluster(make_vault(cluster_config(pg_dsn)), pg_dsn)
    vault = str(cluster.vault)
    try:
        keeper = cluster.start()
        wait_for(cluster.leader)
        # Through the leader once: the cluster's pauses now live in the database.
        assert run_cli("pause", "tick0", "--vault", vault).returncode == 0
        assert run_cli("resume", "tick0", "--vault", vault).returncode == 0
        keeper.terminate()
        assert keeper.wait(timeout=30) == 0

        paused = run_cli("pause", "tick0", "--vault", vault)
        assert paused.returncode == 0, paused.stderr
        assert "paused tick0" in paused.stdout
        assert cluster.query("SELECT state->'paused_jobs' FROM watchkeeper.state") == [
            (["tick0"],)
        ]
        jobs = run_cli("jobs", "--json", "--vault", vault)
        assert json.loads(jobs.stdout)[0]["paused"] is True, jobs.stdout
        # The next leader starts paused, whichever host it is on.
        cluster.start()
        wait_for(cluster.leader)

        def through_the_leader() -> Any:
            # The lease is taken a moment before the leader's control socket answers;
            # until then the CLI reads the database, as it does with no keeper.
            answer = run_cli("jobs", "--json", "--vault", vault)
            return answer if "through keeper pid" in answer.stderr else None

        through: Any = wait_for(through_the_leader)
        assert json.loads(through.stdout)[0]["paused"] is True
        cluster.stop_all()

        resumed = run_cli("resume", "tick0", "--vault", vault)
        assert resumed.returncode == 0, resumed.stderr
        assert cluster.query("SELECT state->'paused_jobs' FROM watchkeeper.state") == [([],)]
    finally:
        cluster.stop_all()


def test_pause_with_the_database_down_is_exit_2_masked(make_vault: Any, tmp_path: Path) -> None:
    dsn = f"postgresql://wk:s3cret-pw@/wk?host={tmp_path / 'nowhere'}"
    vault = make_vault(cluster_config(dsn))
    result = run_cli("pause", "--vault", str(vault))
    assert result.returncode == 2, result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr
    assert not (vault / "Logs" / "state.toml").exists()


FILE_JOB = """
[jobs.inbox]
command = ["sh", "-c", "test -e ok"]
on_files = ["Inbox/*.md"]
settle = "0s"
quarantine_after = 1
"""


def test_requeue_in_cluster_mode_records_in_the_database_ledger(
    make_vault: Any, pg_dsn: str
) -> None:
    cluster = Cluster(make_vault(cluster_config(pg_dsn, jobs=0) + FILE_JOB), pg_dsn)
    vault = cluster.vault
    try:
        cluster.start()
        wait_for(cluster.leader)
        (vault / "Inbox").mkdir(exist_ok=True)
        (vault / "Inbox" / "x.md").write_text("hello")
        quarantined = vault / "Needs_Action" / "x.md"
        wait_for(quarantined.exists, timeout=60)
        (vault / "ok").write_text("")
        result = run_cli("requeue", str(quarantined), "--vault", str(vault))
        assert result.returncode == 0, result.stderr
        assert "requeued" in result.stdout
        outcomes = [
            json.loads(row[0])["outcome"]
            for row in cluster.query("SELECT entry FROM watchkeeper.files ORDER BY seq")
        ]
        assert "requeued" in outcomes, outcomes

        def handed_again() -> list[dict[str, Any]]:
            return [
                r
                for r in final_records(vault).values()
                if r["status"] == "success" and r.get("files") == ["Inbox/x.md"]
            ]

        wait_for(handed_again, timeout=30)
    finally:
        cluster.stop_all()
