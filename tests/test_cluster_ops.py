"""Operating a cluster through the real CLI against real `watchkeeper --daemon` keepers,
real workers and a real PostgreSQL: what a remote run's record says, cancelling a run no
worker has taken, pause/resume and requeue with no keeper on this host."""

from __future__ import annotations

import socket
from collections.abc import Iterator
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
    rows = remote.query(
        "SELECT host, record->>'host' FROM watchkeeper.runs WHERE run_id = %s", record[0]["id"]
    )
    assert rows == [("far-host", "far-host")]


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
