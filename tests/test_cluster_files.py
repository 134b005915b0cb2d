"""File triggers in cluster mode (issue 16): two `watchkeeper --daemon` keepers share one
vault and a real PostgreSQL; files keep arriving while the leader is killed with -9.
Every file is handed once across the failover: one success in the cluster's ledger and
one successful run for each, none lost; only a run the kill cut off may have had a file
before (at-least-once for those, as on one host)."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from cluster_daemons import TAKEOVER, Cluster, cluster_config
from conftest import final_records, wait_for

FILE_JOB = """
[jobs.inbox]
command = ["sh", "-c", "printf '%s\\\\n' \\"$WATCHKEEPER_FILES\\" >> handled.txt"]
on_files = ["Inbox/*.md"]
settle = "0s"
"""
EVERY = 0.05  # a file every 50 ms


class Dropper(threading.Thread):
    """Drops Inbox/NNNN.md files, each whole at once (renamed into place), until stopped."""

    def __init__(self, vault: Path) -> None:
        super().__init__(daemon=True)
        self.inbox = vault / "Inbox"
        self.inbox.mkdir(exist_ok=True)
        self.dropped: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            name = f"{len(self.dropped):04d}.md"
            part = self.inbox / f".{name}.part"
            part.write_text(f"file {name}\n")
            os.replace(part, self.inbox / name)
            self.dropped.append(f"Inbox/{name}")
            self.done.wait(EVERY)


def ledger(cluster: Cluster) -> list[dict[str, Any]]:
    return [
        json.loads(row[0])
        for row in cluster.query("SELECT entry FROM watchkeeper.files ORDER BY seq")
    ]


def test_each_file_is_handed_once_across_a_kill_9_of_the_leader(
    make_vault: Any, pg_dsn: str
) -> None:
    cluster = Cluster(make_vault(cluster_config(pg_dsn, jobs=0) + FILE_JOB), pg_dsn)
    vault = cluster.vault
    dropper = Dropper(vault)
    try:
        cluster.start()
        cluster.start()
        leader = wait_for(cluster.leader)
        assert isinstance(leader, tuple)
        epoch, pid = leader
        dropper.start()
        wait_for(lambda: sum(e["outcome"] == "success" for e in ledger(cluster)) >= 10)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (found := cluster.leader()) and found[0] > epoch, timeout=TAKEOVER + 10)
        # Files keep coming for a while under the new leader, then stop.
        after = len(dropper.dropped)
        wait_for(lambda: len(dropper.dropped) >= after + 20)
        dropper.done.set()
        dropper.join()
        dropped = set(dropper.dropped)

        def all_done() -> bool:
            return {e["path"] for e in ledger(cluster) if e["outcome"] == "success"} >= dropped

        wait_for(all_done, timeout=60)
        entries = ledger(cluster)
        successes = Counter(e["path"] for e in entries if e["outcome"] == "success")
        assert set(successes) == dropped
        assert max(successes.values()) == 1, [p for p, n in successes.items() if n > 1]
        assert {e["outcome"] for e in entries} <= {"success", "interrupted"}

        wait_for(lambda: all(r["status"] != "running" for r in final_records(vault).values()))
        records = final_records(vault)
        handed: Counter[str] = Counter()
        for record in records.values():
            if record["status"] == "success":
                handed.update(record["files"])
        assert set(handed) == dropped and max(handed.values()) == 1
        # A file seen twice by the command was in a run the kill cut off.
        cut_off = {
            path for r in records.values() if r["status"] == "interrupted" for path in r["files"]
        }
        seen = Counter(line for line in (vault / "handled.txt").read_text().splitlines() if line)
        assert set(seen) == dropped
        assert {path for path, n in seen.items() if n > 1} <= cut_off
        assert {e["path"] for e in entries if e["outcome"] == "interrupted"} <= cut_off
        # The new leader's keeper wrote what it handed; the dead one's epoch nothing after.
        epochs = cluster.query("SELECT DISTINCT epoch FROM watchkeeper.files ORDER BY epoch")
        assert [row[0] for row in epochs] == [epoch, epoch + 1]
    finally:
        dropper.done.set()
        cluster.stop_all()
