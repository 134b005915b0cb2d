"""1,000 HTTP jobs every second against a local server: as `http` jobs (the keeper calls
with aiohttp, core/http_job.py) and as the same calls made by `curl` commands, in the
same run; prints one JSON line with the two side by side.

    .venv/bin/python bench/http_jobs.py [--jobs 1000] [--rounds 3] [--window 8]

The server is an aiohttp app in a process of its own on 127.0.0.1 (answers 200 "ok").
Each (round, side) runs in a fresh worker process (this file with --worker), so its CPU
time is that side's alone; rounds alternate the sides so both see the same box. Jobs'
first slots are spread evenly over one second (a fleet started at different times), the
first second is warm-up, then `window` seconds are measured. Per side, its median round:
- start lateness: the run handed on (http: the request task made; curl: the child
  exists) minus its slot's due time, p50 / p99 / max in ms;
- end lateness: the run's end (the response read; curl exited) minus its due time;
- keeper_cpu_pct: the worker's own CPU (all threads) over the window, % of one core;
  children_cpu_pct: the curl processes' (0 for http); total_cpu_pct both;
- runs, expected, missed (slots that did not run: skipped, the job's last run still
  going), failed: summed over the rounds.
loadavg before and after is in the output: the box may be shared. The default run takes
under two minutes on 2 CPUs (1 min 48 s here), most of it the curl side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LEAD = 1.0  # setup done this long before the first slot
WARMUP = 1.0
SIDES = ("http", "curl")
SERVER = """
import sys
from aiohttp import web

async def ok(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def spread(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(v * 1000 for v in values)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(percentile(ordered, 0.5), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
    }


def config(side: str, jobs: int, url: str) -> str:
    lines = ["[keeper]", "max_parallel = 4000", 'log_max_size = "1GB"', "log_backups = 1", ""]
    if side == "http":
        body = f'http = {{ url = "{url}", timeout = "10s" }}'
    else:
        body = f'command = ["curl", "-sSf", "-o", "/dev/null", "--max-time", "10", "{url}"]'
    for index in range(jobs):
        lines += [f"[jobs.j{index:05d}]", body, 'every = "1s"', ""]
    return "\n".join(lines)


async def worker(side: str, jobs: int, window: float, url: str) -> dict[str, Any]:
    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.daemon import freeze_startup, tune_process
    from watchkeeper.core.keeper import Keeper, StartRequest
    from watchkeeper.core.runtime import ActiveRun
    from watchkeeper.core.seams import Started

    vault = Path(tempfile.mkdtemp(prefix="wk-bench-http-"))
    try:
        (vault / CONFIG_NAME).write_text(config(side, jobs, url))
        keeper = Keeper(load_config(vault / CONFIG_NAME))
        tune_process()
        await keeper.start()
        freeze_startup()
        d0 = time.monotonic() + LEAD
        start, end = d0 + WARMUP, d0 + WARMUP + window
        keeper.slots.heaps["mono"].clear()
        for i, runtime in enumerate(keeper.jobs.values()):
            due = d0 + i / jobs
            runtime.next_due[0] = due
            keeper.slots.push("mono", due, runtime.name, 0)
        began: list[float] = []
        ended: list[float] = []
        outcomes: dict[str, int] = {}
        skipped = 0

        def started(active: ActiveRun, run: Started) -> None:
            due = active.request.due_mono
            if due is None or not start <= due < end:
                return
            began.append(run.started_mono - due)

            def done() -> None:
                assert active.run is not None
                status = active.run.done.result().status
                outcomes[status] = outcomes.get(status, 0) + 1
                ended.append(time.monotonic() - due)

            # The handle exists once the keeper has watched the run: a loop turn later.
            asyncio.get_running_loop().call_soon(
                lambda: active.run and active.run.done.add_done_callback(lambda _: done())
            )

        def never(request: StartRequest, status: str, reason: str) -> None:
            nonlocal skipped
            if request.due_mono is not None and start <= request.due_mono < end:
                skipped += 1

        keeper.runs.on_started.append(started)
        keeper.runs.on_never_started.append(never)
        serving = asyncio.create_task(keeper.serve())
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        own, children = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
        wall = time.monotonic()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        elapsed = time.monotonic() - wall
        own_pct = 100 * (cpu(resource.RUSAGE_SELF) - own) / elapsed
        await asyncio.sleep(1.5)  # the last measured runs end
        children_pct = 100 * (cpu(resource.RUSAGE_CHILDREN) - children) / elapsed
        await keeper.stop(grace=5.0)
        await serving
        expected = jobs * round(window)
        return {
            "start": spread(began),
            "end": spread(ended),
            "keeper_cpu_pct": round(own_pct, 1),
            "children_cpu_pct": round(children_pct, 1),
            "total_cpu_pct": round(own_pct + children_pct, 1),
            "runs": len(began),
            "expected": expected,
            "missed": expected - len(began),
            "skipped": skipped,
            "failed": sum(n for status, n in outcomes.items() if status != "success"),
        }
    finally:
        shutil.rmtree(vault, ignore_errors=True)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median end p99, plus the medians of CPU over all rounds."""
    ordered = sorted(rounds, key=lambda r: r["end"]["p99_ms"] or math.inf)
    chosen = dict(ordered[len(ordered) // 2])
    for key in ("keeper_cpu_pct", "children_cpu_pct", "total_cpu_pct"):
        chosen[key] = round(statistics.median(r[key] for r in rounds), 1)
    for key in ("runs", "expected", "missed", "skipped", "failed"):
        chosen[key] = sum(r[key] for r in rounds)  # over all rounds
    return chosen


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--worker", choices=SIDES)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args.jobs, args.window, args.url))))
        return
    if shutil.which("curl") is None:
        sys.exit("curl is not installed: the bench compares against it")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["curl", "-sf", "-o", "/dev/null", url]).returncode != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the bench's server did not start")
            time.sleep(0.1)
        load_before = os.getloadavg()[0]
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for number in range(args.rounds):
            for side in SIDES if number % 2 == 0 else reversed(SIDES):
                worker_args = ["--worker", side, "--jobs", str(args.jobs)]
                worker_args += ["--window", str(args.window), "--url", url]
                done = subprocess.run(
                    [sys.executable, __file__, *worker_args],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            json.dumps(
                {
                    "bench": "http_jobs",
                    "jobs": args.jobs,
                    "every_s": 1,
                    "window_s": args.window,
                    "rounds": args.rounds,
                    **{side: median_round(rounds) for side, rounds in results.items()},
                    "rounds_detail": results,
                    "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
