"""Cluster mode (issue 16) on this box; prints one JSON line.

    .venv/bin/python bench/cluster.py [--failovers 20] [--lease 2] [--runs 100] [--burst 200]

A real PostgreSQL (tests/pgserver.py), real `watchkeeper --daemon` keepers and real
`watchkeeper worker` processes:

- failover: two keepers lead and stand by on one vault whose job fires every second;
  `--failovers` times the leader is killed with -9 (a fresh keeper replaces it, so a
  standby is always there) and the time from the kill to the first slot the new leader
  fires (watchkeeper.slots.fired_at, the database's clock: same box) is taken. Median
  and max, against the target lease + 5 s. Then every keeper stops and the books are
  checked: duplicate_slots (a (job, slot) fired twice: in the slots table, or two final
  records for one run in the JSONL history) and lost_records (a claimed slot whose run
  has no final record in the database) must both be 0.
- dispatch: a run on a worker against a local one, submit (what the keeper does at the
  slot) → child alive on the worker, p50/p99 (bench/cluster_dispatch.py's measure).
- throughput: `--burst` trivial runs (`true`) submitted at once through 2 workers
  (concurrency 4 each) against the LocalExecutor in the same process, runs/s.

The box may be shared: loadavg before and after is in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from cluster_dispatch import CLUSTER, Side, measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgserver import start_server

from watchkeeper.core.cluster.remote import RemoteExecutor
from watchkeeper.core.runner import LocalExecutor, RunSpec

CLI = Path(sys.executable).parent / "watchkeeper"
PATIENCE = 60.0


def query(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        try:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        except psycopg.errors.UndefinedTable:
            return []


def wait_for(what: str, condition: Any, timeout: float = PATIENCE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/cluster.py: {what}: not within {timeout:g}s")
        time.sleep(0.01)


class Keepers:
    def __init__(self, vault: Path, dsn: str) -> None:
        self.vault, self.dsn = vault, dsn
        self.live: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_VAULT"}
        process = subprocess.Popen(
            [str(CLI), "--daemon", "--vault", str(self.vault)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.live[process.pid] = process

    def leader(self) -> tuple[int, int] | None:
        rows = query(
            self.dsn,
            "SELECT epoch, pid FROM watchkeeper.leader WHERE expires_at > clock_timestamp()",
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.live.pop(pid).wait()

    def stop(self) -> None:
        for process in self.live.values():
            process.send_signal(signal.SIGTERM)
        for process in self.live.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.live.clear()


def first_fired(dsn: str, epoch: int) -> float | None:
    rows = query(
        dsn,
        "SELECT extract(epoch FROM min(fired_at)) FROM watchkeeper.slots WHERE epoch = %s",
        epoch,
    )
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


def failovers(dsn: str, work: Path, count: int, lease: float) -> dict[str, Any]:
    vault = work / "vault"
    vault.mkdir()
    (vault / "watchkeeper.toml").write_text(
        f'[cluster]\ndatabase = "{dsn}"\nname = "ops"\nlease = "{lease:g}s"\n\n'
        '[jobs.tick]\ncommand = ["true"]\nevery = "1s"\n'
    )
    keepers = Keepers(vault, dsn)
    took: list[float] = []
    try:
        keepers.start()
        keepers.start()
        for _ in range(count):
            epoch, pid = wait_for("a leader", keepers.leader)
            wait_for("the leader fires", lambda e=epoch: first_fired(dsn, e))
            killed = time.time()
            keepers.kill(pid)
            keepers.start()  # the next standby
            fired = wait_for(
                "the new leader fires",
                lambda e=epoch: first_fired(dsn, e + 1),
                timeout=lease + 5 + PATIENCE,
            )
            took.append(fired - killed)
    finally:
        keepers.stop()
    books = check_books(dsn, vault)
    return {
        "failovers": count,
        "lease_s": lease,
        "kill_to_first_slot_s": {
            "median": round(statistics.median(took), 3),
            "max": round(max(took), 3),
            "target": lease + 5,
        },
        **books,
    }


def check_books(dsn: str, vault: Path) -> dict[str, int]:
    """duplicate_slots: a (job, slot) fired twice, or one run for two slots. lost_records:
    a run that started (its running line in the database or the JSONL export) with no
    final record in the database. claimed_not_started: a slot claimed by a leader killed
    before its run's running line was written anywhere (never fired: the slot is missed,
    not doubled). double_finals_in_export: runs with two final lines in the JSONL export
    (the killed leader wrote one there that had not reached the database, and the new
    leader closed the run interrupted)."""
    slots = query(dsn, "SELECT job, slot, run_id FROM watchkeeper.slots")
    duplicate = sum(n - 1 for n in Counter((job, slot) for job, slot, _ in slots).values())
    duplicate += sum(n - 1 for n in Counter(run_id for *_, run_id in slots).values())
    lines: dict[str, list[str]] = {}
    for segment in sorted((vault / "Logs" / "history").glob("*.jsonl")):
        for line in segment.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                lines.setdefault(record["id"], []).append(record["status"])
    status = dict(query(dsn, "SELECT run_id, status FROM watchkeeper.runs"))  # type: ignore[arg-type]
    started = set(lines) | set(status)
    return {
        "slots_fired": len(slots),
        "duplicate_slots": duplicate,
        "lost_records": sum(1 for run in started if status.get(run, "running") == "running"),
        "claimed_not_started": sum(1 for *_, run in slots if run not in started),
        "double_finals_in_export": sum(
            1 for seen in lines.values() if sum(s != "running" for s in seen) > 1
        ),
    }


async def burst(executor: Any, side: Side, prefix: str, count: int, runs_on: str) -> float:
    """Runs/s for `count` trivial runs submitted at once, until the last one ended."""
    loop = asyncio.get_running_loop()
    env = {"PATH": os.environ["PATH"]}
    specs = [
        RunSpec(f"{prefix}{i}", ["true"], env, Path("/"), runs_on=(runs_on,)) for i in range(count)
    ]
    for spec in specs:
        side.started[spec.run_id] = loop.create_future()
    began = time.monotonic()
    executor.submit([(spec.run_id, spec) for spec in specs])
    ends = []
    for spec in specs:
        _, started = await asyncio.wait_for(side.started[spec.run_id], PATIENCE)
        del side.started[spec.run_id]
        if isinstance(started, Exception):
            raise started
        ends.append(executor.watch(spec, started, lambda chunk: None).done)
    outcomes = await asyncio.wait_for(asyncio.gather(*ends), PATIENCE * 5)
    assert all(outcome.status == "success" for outcome in outcomes), outcomes
    return round(count / (time.monotonic() - began), 1)


async def throughput(dsn: str, count: int) -> dict[str, float]:
    remote_side, local_side = Side(), Side()
    remote = RemoteExecutor(remote_side.deliver, dsn, CLUSTER)
    local = LocalExecutor(local_side.deliver)
    try:
        await burst(remote, remote_side, "warm", 8, "any")
        return {
            "remote_2_workers": await burst(remote, remote_side, "t", count, "any"),
            "local": await burst(local, local_side, "l", count, "keeper"),
        }
    finally:
        local.shutdown()
        await remote.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=20, help="0: dispatch and throughput only")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=100, help="dispatch: runs of each kind")
    parser.add_argument("--burst", type=int, default=200, help="throughput: runs at once")
    args = parser.parse_args()
    load_before = os.getloadavg()
    server = start_server()
    work = Path(tempfile.mkdtemp(prefix="wk-bench-"))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        failover = (
            failovers(server.new_database(), work, args.failovers, args.lease)
            if args.failovers
            else None
        )
        dsn = server.new_database()
        (work / "watchkeeper.toml").write_text(
            f'[cluster]\ndatabase = "{dsn}"\nname = "{CLUSTER}"\n'
        )
        for _ in range(2):
            workers.append(
                subprocess.Popen(
                    [str(CLI), "worker", "--vault", str(work), "--concurrency", "4"],
                    stdin=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        dispatch = asyncio.run(measure(dsn, args.runs))
        runs_per_s = asyncio.run(throughput(dsn, args.burst))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        server.stop("immediate")
        shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "cluster",
                "failover": failover,
                "dispatch": dispatch,
                "throughput_runs_per_s": runs_per_s,
                "loadavg": [load_before[0], os.getloadavg()[0]],
            }
        )
    )


if __name__ == "__main__":
    main()
