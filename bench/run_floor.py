"""The least CPU a scheduled run can cost on this box, in asyncio; prints one JSON line.

    .venv/bin/python bench/run_floor.py [--seconds 10] [--rounds 3] [--peer]

A bare asyncio program does only what every run of the keeper must: wake on the loop's
timer ahead of the slot, sleep the rest precisely (core/precise.py), start /bin/true
with an output pipe (core/child_start.py, as the keeper does), watch its pidfd, and at
its exit waitid / TERM the group / read and close the pipe / reap, with a line written to
a file at the start and at the end. No records, quota, logs or events ("bare").

"records" adds what DESIGN has every run leave behind and nothing else: its running and
final lines in Logs/history (a RunRecord written by the keeper's own HistoryWriter) and
its start and end lines in Logs/watchkeeper.log (the keeper's KeeperLog), each callback's
lines written together at its end, as the keeper's loop turn does (core/turn_end.py). A
silent run that succeeds writes nothing to its job log, in the keeper too. "minimal"
writes lines of the same shape and size with the least Python there can be (one format
each, one write per file and callback): what those lines cost at the very least.

Each (rate, mode) runs in a fresh process, as bench/fire_lateness.py's workers do: CPU%
is the process's own user + system time over the measured window, as a percentage of
one core, and voluntary context switches a run tell how many times a run puts the
process to sleep. With --peer, the keeper's and APScheduler's fire workers from
bench/fire_lateness.py run beside them, so floors and peers come from the same run on the
same box, interleaved round by round.

This is the floor the keeper's per-run CPU in bench/fire_lateness.py stands on: what it
spends above "records" is its own bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fire_lateness

from watchkeeper.core.child_start import start_child
from watchkeeper.core.history import HistoryWriter, RunRecord, elapsed_ms
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.precise import sleep_until
from watchkeeper.core.runtime import new_run_id
from watchkeeper.core.units import format_duration

RATES = (100, 1000)
LEAD = 0.002  # as tuning.FINE_WAIT: the loop's timer wakes this early
WARMUP = 1.0


def usage() -> tuple[float, float, int]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime, own.ru_stime, own.ru_nvcsw


HISTORY_LINE = (
    '{"id":"%s","taskId":"%s","taskName":"%s","project":"vault","startedAt":"%s",'
    '"completedAt":%s,"status":"%s","duration":%s,"error":null,"cronExpression":null,'
    '"worktreeBranch":null,"trigger":"schedule","attempt":1,"exitCode":%s,"files":[],'
    '"host":"%s"}\n'
)


def append_only(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


class Bare:
    """A short line of our own at a run's start and at its end."""

    def __init__(self, folder: Path) -> None:
        self.out = append_only(folder / "runs.jsonl")

    def started(self, index: int, pid: int) -> Any:
        os.write(self.out, b'{"id":"%d","status":"running"}\n' % index)
        return index

    def ended(self, index: Any) -> None:
        os.write(self.out, b'{"id":"%d","status":"success"}\n' % index)

    def close(self) -> None:
        os.close(self.out)


class Minimal:
    """The lines "records" writes, in shape and size, with the least Python."""

    def __init__(self, folder: Path) -> None:
        self.history = append_only(folder / "history.jsonl")
        self.log = append_only(folder / "watchkeeper.log")
        self.host = socket.gethostname()

    def started(self, index: int, pid: int) -> Any:
        run_id, job = new_run_id(), f"j{index % 1000:05d}"
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = HISTORY_LINE % (run_id, job, job, now, "null", "running", "null", "null", self.host)
        os.write(self.history, line.encode())
        log = f"{now} INFO  run {run_id} of {job} started (schedule, pid {pid})\n"
        os.write(self.log, log.encode())
        return run_id, job, now, time.monotonic()

    def ended(self, run: Any) -> None:
        run_id, job, started, began = run
        ms = elapsed_ms(time.monotonic() - began)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = HISTORY_LINE % (run_id, job, job, started, f'"{now}"', "success", ms, 0, self.host)
        os.write(self.history, line.encode())
        os.write(self.log, f"{now} INFO  run {run_id} of {job} success in {ms}ms\n".encode())

    def close(self) -> None:
        os.close(self.history)
        os.close(self.log)


class Records:
    """What the keeper writes of a run, with its own writers."""

    def __init__(self, folder: Path) -> None:
        logs = folder / "Logs"
        (logs / "history").mkdir(parents=True)
        self.history = HistoryWriter(logs / "history")
        self.log = KeeperLog(logs / "watchkeeper.log", 1 << 30, 1)
        # Gathered and written at the end of the callback, as the keeper's loop turn does.
        self.history.defer = self.log.defer = lambda flush: None
        self.host = socket.gethostname()

    def started(self, index: int, pid: int) -> Any:
        record = RunRecord(
            id=new_run_id(),
            job=f"j{index % 1000:05d}",
            project="vault",
            started_at=datetime.now(UTC),
            status="running",
            trigger="schedule",
            host=self.host,
            attempt=1,
        )
        self.history.append(record)
        self.log.info(f"run {record.id} of {record.job} started (schedule, pid {pid})")
        self.flush()
        return record, time.monotonic()

    def ended(self, run: Any) -> None:
        record, began = run
        record.status, record.exit_code = "success", 0
        record.duration_ms = elapsed_ms(time.monotonic() - began)
        record.completed_at = datetime.now(UTC)
        self.history.append(record)
        duration = format_duration(record.duration_ms / 1000)
        self.log.info(f"run {record.id} of {record.job} success in {duration}")
        self.flush()

    def flush(self) -> None:
        self.history.flush()
        self.log.flush()

    def close(self) -> None:
        self.history.close()
        self.log.close()


WRITERS = {"bare": Bare, "minimal": Minimal, "records": Records}


async def fire(rate: int, seconds: float, folder: Path, mode: str) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    env = dict(os.environ)
    lines = WRITERS[mode](folder)
    start = time.monotonic() + 0.5
    total = int(rate * (WARMUP + seconds + 0.5))
    left = [total]
    finished = loop.create_future()

    def run(index: int) -> None:
        sleep_until(start + index / rate)
        read_end, write_end = os.pipe()
        child = start_child(["/bin/true"], env, folder, stdin, write_end)
        os.close(write_end)
        os.set_blocking(read_end, False)
        pidfd = os.pidfd_open(child.pid)
        token = lines.started(index, child.pid)

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGTERM)
            os.read(read_end, 65536)
            os.close(read_end)
            child.reap()
            os.close(pidfd)
            lines.ended(token)
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
    lines.close()
    os.close(stdin)
    runs = rate * elapsed
    return {
        "cpu_pct": round(100 * (user1 - user0 + system1 - system0) / elapsed, 2),
        "us_per_run": round(1e6 * (user1 - user0 + system1 - system0) / runs),
        "switches_per_run": round((switches1 - switches0) / runs, 2),
    }


def worker(rate: int, seconds: float, mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wk-floor-") as folder:
        return asyncio.run(fire(rate, seconds, Path(folder), mode))


def measure(rate: int, mode: str, seconds: float) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", str(rate), "--mode", mode]
    command += ["--seconds", str(seconds)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def peer(rate: int, impl: str, seconds: float) -> dict[str, float]:
    """The keeper ("wk") or APScheduler ("aps") on the same rate, in bench/fire_lateness.py's
    worker (its --quick window when this run's is short)."""
    result = fire_lateness.run_worker(f"every1s_{rate}", impl, quick=seconds < 10)
    return {"cpu_pct": result["cpu_pct"], "us_per_run": round(1e4 * result["cpu_pct"] / rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--peer", action="store_true", help="the keeper and APScheduler beside the floors"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=WRITERS, default="bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds, args.mode)))
        return
    if args.peer:
        fire_lateness.ensure_apscheduler()
    rounds: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):  # interleaved, so a busy spell hits every column alike
        for rate in RATES:
            for mode in WRITERS:
                rounds.setdefault(f"every1s_{rate}/{mode}", []).append(
                    measure(rate, mode, args.seconds)
                )
            for impl in ("wk", "aps") if args.peer else ():
                rounds.setdefault(f"every1s_{rate}/{impl}", []).append(
                    peer(rate, impl, args.seconds)
                )
    results = {
        name: {
            "us_per_run": statistics.median(r["us_per_run"] for r in runs),
            "cpu_pct": statistics.median(r["cpu_pct"] for r in runs),
            "rounds_us_per_run": [r["us_per_run"] for r in runs],
        }
        for name, runs in rounds.items()
    }
    print(json.dumps({"floor": results}))


if __name__ == "__main__":
    main()
