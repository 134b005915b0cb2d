"""The least CPU a scheduled run can cost on this box, in asyncio; prints one JSON line.

    .venv/bin/python bench/run_floor.py [--seconds 10]

A bare asyncio program does only what every run of the keeper must: wake on the loop's
timer ahead of the slot, sleep the rest precisely (core/precise.py), start /bin/true
with an output pipe (core/child_start.py, as the keeper does), watch its pidfd, and at
its exit waitid / TERM the group / read and close the pipe / reap, with a line written to
a file at the start and at the end. No records, quota, logs or events. Each rate runs in
a fresh process, as bench/fire_lateness.py's workers do: CPU% is the process's own user
+ system time over the measured window, as a percentage of one core, and voluntary
context switches a run tell how many times a run puts the process to sleep.

This is the floor the keeper's per-run CPU in bench/fire_lateness.py stands on: what it
spends above it is its own work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from watchkeeper.core.child_start import start_child
from watchkeeper.core.precise import sleep_until

RATES = (100, 1000)
LEAD = 0.002  # as tuning.FINE_WAIT: the loop's timer wakes this early
WARMUP = 1.0


def usage() -> tuple[float, float, int]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime, own.ru_stime, own.ru_nvcsw


async def fire(rate: int, seconds: float, folder: Path) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    env = dict(os.environ)
    lines = os.open(folder / "runs.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.monotonic() + 0.5
    total = int(rate * (WARMUP + seconds + 0.5))
    left = [total]
    finished = loop.create_future()

    def run(index: int) -> None:
        sleep_until(start + index / rate)
        os.write(lines, b'{"id":"%d","status":"running"}\n' % index)
        read_end, write_end = os.pipe()
        child = start_child(["/bin/true"], env, folder, stdin, write_end)
        os.close(write_end)
        os.set_blocking(read_end, False)
        pidfd = os.pidfd_open(child.pid)

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGTERM)
            os.read(read_end, 65536)
            os.close(read_end)
            child.reap()
            os.close(pidfd)
            os.write(lines, b'{"id":"%d","status":"success"}\n' % index)
            left[0] -= 1
            if not left[0]:
                finished.set_result(None)

        loop.add_reader(pidfd, exited)

    for index in range(total):
        loop.call_at(start + index / rate - LEAD, run, index)
    await asyncio.sleep(start + WARMUP - time.monotonic())
    user0, system0, switches0 = usage()
    began = time.monotonic()
    await asyncio.sleep(seconds)
    user1, system1, switches1 = usage()
    elapsed = time.monotonic() - began
    await finished
    os.close(lines)
    os.close(stdin)
    runs = rate * elapsed
    return {
        "cpu_pct": round(100 * (user1 - user0 + system1 - system0) / elapsed, 2),
        "user_pct": round(100 * (user1 - user0) / elapsed, 2),
        "us_per_run": round(1e6 * (user1 - user0 + system1 - system0) / runs),
        "switches_per_run": round((switches1 - switches0) / runs, 2),
    }


def worker(rate: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wk-floor-") as folder:
        return asyncio.run(fire(rate, seconds, Path(folder)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds)))
        return
    results = {}
    for rate in RATES:
        command = [sys.executable, __file__, "--worker", str(rate), "--seconds", str(args.seconds)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[f"every1s_{rate}"] = json.loads(done.stdout)
    print(json.dumps({"floor": results}))


if __name__ == "__main__":
    main()
