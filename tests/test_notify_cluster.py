"""Notifications from a cluster leader: a real `watchkeeper --daemon` against a real
PostgreSQL, a real command channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster_daemons import Cluster, cluster_config
from conftest import run_cli, wait_for

PAGER = """
[notify.pager]
command = ["sh", "page.sh", "paged.jsonl"]
events = ["missed"]
rate_window = "0s"

[jobs.held]
command = ["true"]
every = "200ms"
notify = ["pager"]
"""


def _paged(vault: Path) -> list[dict[str, Any]]:
    paged = vault / "paged.jsonl"
    if not paged.exists():
        return []
    return [json.loads(line) for line in paged.read_text().splitlines() if line.strip()]


def test_a_paused_jobs_slots_are_notified_missed_by_the_cluster_leader(
    make_vault: Any, pg_dsn: str
) -> None:
    cluster = Cluster(make_vault(cluster_config(pg_dsn, jobs=0) + PAGER), pg_dsn)
    (cluster.vault / "page.sh").write_text('cat >> "$1"\necho >> "$1"\n')
    try:
        cluster.start()
        wait_for(cluster.leader, timeout=60)
        paused = run_cli("pause", "held", "--vault", str(cluster.vault))
        assert paused.returncode == 0, paused.stderr
        messages = wait_for(lambda: _paged(cluster.vault), timeout=20)
        assert isinstance(messages, list)
    finally:
        cluster.stop_all()
    events = [event for message in messages for event in message["events"]]
    assert events[0]["event"] == "missed" and events[0]["job"] == "held"
    assert events[0]["error"] == "slot missed: paused"
