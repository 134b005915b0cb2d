"""Cluster keepers as real `watchkeeper --daemon` processes on one vault, and workers as
real `watchkeeper worker` processes: shared by the failover, operations and file tests
and bench/cluster.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from conftest import CLI, final_records, history_lines

LEASE = 2.0
TAKEOVER = LEASE + 5.0
# A worker that says it runs on another host (one box here): the CLI's worker with the
# host it reports set, as a worker on a second machine would report its own.
WORKER_ELSEWHERE = (
    "import asyncio, sys\n"
    "from watchkeeper.core.cluster.worker import WorkerSettings, run_worker\n"
    "dsn, cluster, host = sys.argv[1:]\n"
    "asyncio.run(run_worker(WorkerSettings(dsn, cluster, heartbeat=0.5, host=host)))\n"
)


class Cluster:
    """Keepers of one vault, each a `watchkeeper --daemon` with its output in a file."""

    def __init__(self, vault: Path, dsn: str) -> None:
        self.vault, self.dsn = vault, dsn
        self.keepers: list[subprocess.Popen[bytes]] = []
        self.outputs: dict[int, Path] = {}
        self.workers: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
        output = self.vault.parent / f"keeper-{len(self.keepers)}.out"
        with output.open("w") as out:
            process = subprocess.Popen(
                [str(CLI), "--daemon", "--vault", str(self.vault)],
                env={**env, "NO_COLOR": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.keepers.append(process)
        self.outputs[process.pid] = output
        return process

    def start_worker(self, host: str | None = None) -> subprocess.Popen[bytes]:
        """A worker of this cluster (`host`: the one it reports, else this one's)."""
        env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
        if host is None:
            argv = [str(CLI), "worker", "--vault", str(self.vault), "--heartbeat", "0.5"]
        else:
            argv = [sys.executable, "-c", WORKER_ELSEWHERE, self.dsn, "ops", host]
        output = self.vault.parent / f"worker-{len(self.workers)}.out"
        with output.open("w") as out:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        self.workers.append(process)
        self.outputs[process.pid] = output
        return process

    def output(self, pid: int) -> str:
        return self.outputs[pid].read_text(errors="replace")

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.errors.UndefinedTable:
                return []  # no keeper has made the schema yet

    def leader(self) -> tuple[int, int] | None:
        """(epoch, pid) of the live lease, by the database's clock."""
        rows = self.query(
            "SELECT epoch, pid FROM watchkeeper.leader WHERE expires_at > clock_timestamp()"
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def slot_rows(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT job, slot, epoch, run_id, fired_at FROM watchkeeper.slots")

    def assert_no_slot_fired_twice(self) -> None:
        rows = self.slot_rows()
        keys = [(job, slot) for job, slot, *_ in rows]
        assert len(keys) == len(set(keys))
        claimed = {run_id for *_, run_id, _ in rows}
        scheduled = [
            record
            for record in final_records(self.vault).values()
            if record["trigger"] in ("schedule", "catch_up")
        ]
        # Every scheduled run in the history is the run of one claimed slot.
        assert scheduled
        unclaimed = [record["id"] for record in scheduled if record["id"] not in claimed]
        assert not unclaimed, unclaimed

    def each_run_has_one_final_record(self) -> bool:
        finals: dict[str, int] = {}
        for line in history_lines(self.vault):
            count = finals.setdefault(line["id"], 0)
            if line["status"] != "running":
                finals[line["id"]] = count + 1
        assert all(count <= 1 for count in finals.values()), finals
        return all(count == 1 for count in finals.values())

    def stop_all(self) -> None:
        for process in self.keepers + self.workers:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.keepers + self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The ticking jobs fire this often: a test that waits for a few slots (a leader at
# work, a new leader firing) waits a fraction of a second for each, not a second.
TICK = "250ms"


def cluster_config(dsn: str, jobs: int = 1) -> str:
    text = f'[cluster]\ndatabase = "{dsn}"\nname = "ops"\nlease = "{LEASE:g}s"\n'
    for index in range(jobs):
        text += f'\n[jobs.tick{index}]\ncommand = ["true"]\nevery = "{TICK}"\n'
    return text


def fired_by(cluster: Cluster, epoch: int) -> int:
    rows = cluster.query("SELECT count(*) FROM watchkeeper.slots WHERE epoch = %s", epoch)
    return int(rows[0][0]) if rows else 0


