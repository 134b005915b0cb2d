"""Dispatch overhead of a run on a worker against a local one; prints one JSON line.

    .venv/bin/python bench/cluster_dispatch.py [--runs 200]

A real PostgreSQL (tests/pgserver.py), one real `watchkeeper worker` (concurrency 4) and,
in this process, the leader's RemoteExecutor and a LocalExecutor on one loop. Each run's
command is `/bin/date +%s.%N`: what it prints is the moment the child was alive (after
its exec), on the same clock as the submit's time.time(). Runs go one at a time,
alternating remote and local, so both see the same box. Reported per executor:
submit → child alive (p50, p99, max, ms); for remote runs also submit → `Started`
delivered to the leader (the worker's claim, the guard, the child, the notification back).
The box may be shared: loadavg before and after is in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgserver import start_server

from watchkeeper.core.cluster import queue
from watchkeeper.core.cluster.remote import RemoteExecutor
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.runner import LocalExecutor, RunSpec

CLI = Path(sys.executable).parent / "watchkeeper"
CLUSTER = "bench"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2)}


class Side:
    """One executor and the futures its deliver callback resolves."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Future[Any]] = {}

    def deliver(self, batch: list[tuple[Any, Any]]) -> None:
        for token, result in batch:
            self.started[token].set_result((time.time(), result))


async def one(executor: Any, side: Side, spec: RunSpec) -> tuple[float, float]:
    """(submit → child alive, submit → Started at the leader), both in ms."""
    loop = asyncio.get_running_loop()
    side.started[spec.run_id] = loop.create_future()
    output: list[bytes] = []
    submitted = time.time()
    executor.submit([(spec.run_id, spec)])
    delivered, started = await asyncio.wait_for(side.started[spec.run_id], 60)
    del side.started[spec.run_id]
    if isinstance(started, Exception):
        raise started
    outcome = await asyncio.wait_for(executor.watch(spec, started, output.append).done, 60)
    assert outcome.status == "success", outcome
    alive = float(b"".join(output).decode().strip())
    return (alive - submitted) * 1000, (delivered - submitted) * 1000


async def measure(dsn: str, runs: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await ensure_schema(conn, also=queue.apply_schema)
    remote_side, local_side = Side(), Side()
    remote = RemoteExecutor(remote_side.deliver, dsn, CLUSTER)
    local = LocalExecutor(local_side.deliver)
    env = {"PATH": os.environ["PATH"]}
    argv = ["/bin/date", "+%s.%N"]
    alive: dict[str, list[float]] = {"remote": [], "local": []}
    started_at_leader: list[float] = []
    try:
        for warmup in range(5):  # connections, the worker's first claim, page cache
            await one(
                remote, remote_side, RunSpec(f"w{warmup}", argv, env, Path("/"), runs_on=("any",))
            )
        for number in range(runs):
            spec = RunSpec(f"r{number}", argv, env, Path("/"), runs_on=("any",))
            child, delivered = await one(remote, remote_side, spec)
            alive["remote"].append(child)
            started_at_leader.append(delivered)
            child, _ = await one(local, local_side, RunSpec(f"l{number}", argv, env, Path("/")))
            alive["local"].append(child)
    finally:
        local.shutdown()
        await remote.close()
    return {
        "submit_to_child_alive_ms": {side: percentiles(values) for side, values in alive.items()},
        "remote_submit_to_started_at_leader_ms": percentiles(started_at_leader),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()
    server = start_server()
    work = Path(tempfile.mkdtemp(prefix="wk-bench-"))
    worker = None
    try:
        dsn = server.new_database()
        (work / "watchkeeper.toml").write_text(
            f'[cluster]\ndatabase = "{dsn}"\nname = "{CLUSTER}"\n'
        )
        worker = subprocess.Popen(
            [str(CLI), "worker", "--vault", str(work), "--concurrency", "4"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result = asyncio.run(measure(dsn, args.runs))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        server.stop("immediate")
        shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "cluster_dispatch",
                "runs": args.runs,
                **result,
                "loadavg": [load_before[0], os.getloadavg()[0]],
            }
        )
    )


if __name__ == "__main__":
    main()
