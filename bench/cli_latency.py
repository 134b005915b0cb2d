"""The quick commands end to end, interpreter start included; prints one JSON line.

    .venv/bin/python bench/cli_latency.py [--runs 21] [--history-runs 1000000] [--quick]

Each of `--status`, `jobs`, `history --limit 50`, `pause JOB`, `resume JOB` and `run JOB`
is run as a real `watchkeeper` process N times, against `python3 -c pass` (the same
interpreter) in the same rounds: once with no keeper, once with a real `--daemon` on the
vault. Then `--status` with no keeper on a vault with a generated history of 1,000,000
runs over 30 days that ends now (so today holds some 33,000 of them), first call (which
summarises the history) reported apart. Medians and p90 (nearest rank) in ms, and each
median less the interpreter's.

Rounds interleave the commands (round i runs each once), so a box that gets busier
midway weighs on all of them alike; loadavg before and after is in the output. The
children may write bytecode (into a temp dir, PYTHONPYCACHEPREFIX), as an installed
watchkeeper's modules have theirs, and the quick commands' compiled dataclass methods
beside it (tui/cli/method_cache.py), which each command's warm-up call writes: what is
measured is a user's call, not a compile.
`pause`/`resume` alternate, so each one changes the state. Each figure also has the
median CPU time of the child (user + system), which a box busy with other work stretches
far less than the wall time.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_kit import stop
from history_query import generate

from watchkeeper.core.vault import ensure_layout

CLI = Path(sys.executable).parent / "watchkeeper"
TARGET_MS = 100.0  # each quick command's median, keeper running or not
TARGET_1M_MS = 150.0  # --status over 1,000,000 runs, no keeper
CONFIG = """\
[jobs.tick]
command = ["true"]
every = "5m"

[jobs.nightly]
command = ["true"]
cron = "0 3 * * *"

[jobs.quick]
command = ["true"]
"""


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(percent * len(ordered) / 100), 1) - 1]


def summary(
    times: list[float], cpu: list[float], baseline: float | None = None
) -> dict[str, float]:
    median = statistics.median(times)
    result = {"median_ms": round(median, 1), "p90_ms": round(nearest_rank(times, 90), 1)}
    if baseline is not None:
        result["over_python_ms"] = round(median - baseline, 1)
    # The child's own CPU time (user + system): what a busy box does not stretch.
    result["cpu_median_ms"] = round(statistics.median(cpu), 1)
    return result


class Runner:
    """Children with the environment a user's shell gives them, bytecode cached aside."""

    def __init__(self, scratch: Path) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("WATCHKEEPER_VAULT", "PYTHONDONTWRITEBYTECODE")
        }
        self.env = {**env, "PYTHONPYCACHEPREFIX": str(scratch / "pycache"), "NO_COLOR": "1"}
        self.last_cpu = 0.0

    def time(self, command: list[str], expect: tuple[int, ...] = (0,)) -> float:
        """Wall milliseconds of one run of `command`; its CPU milliseconds in last_cpu."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=self.env)
        took = (time.perf_counter() - began) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_cpu = 1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode not in expect:
            raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr.decode()}")
        return took


def rounds(runner: Runner, commands: dict[str, Callable[[], float]], count: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for measure in commands.values():
        measure()  # warm: bytecode written, page cache filled
    for _ in range(count):
        for name, measure in commands.items():
            times[name].append(measure())
            cpu[name].append(runner.last_cpu)
    baseline = statistics.median(times["python3 -c pass"])
    return {
        name: summary(values, cpu[name], None if name == "python3 -c pass" else baseline)
        for name, values in times.items()
    }


def quick_commands(runner: Runner, vault: Path, keeper: bool) -> dict[str, Callable[[], float]]:
    wk = [str(CLI)]
    at = ["--vault", str(vault)]
    paused = [False]

    def pause() -> float:
        if paused[0]:
            runner.time([*wk, "resume", "tick", *at])
        paused[0] = True
        return runner.time([*wk, "pause", "tick", *at])

    def resume() -> float:
        if not paused[0]:
            runner.time([*wk, "pause", "tick", *at])
        paused[0] = False
        return runner.time([*wk, "resume", "tick", *at])

    return {
        "python3 -c pass": lambda: runner.time([sys.executable, "-c", "pass"]),
        "--status": lambda: runner.time([*wk, "--status", *at], (0 if keeper else 4,)),
        "jobs": lambda: runner.time([*wk, "jobs", *at]),
        "history --limit 50": lambda: runner.time([*wk, "history", "--limit", "50", *at]),
        "pause": pause,
        "resume": resume,
        "run": lambda: runner.time([*wk, "run", "quick", *at]),
    }


def start_daemon(runner: Runner, vault: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(CLI), "--daemon", "--vault", str(vault)],
            env=runner.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    lock = vault / "Logs" / ".watchkeeper.lock"
    deadline = time.monotonic() + 60
    while True:
        try:
            record = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        if record.get("pid") == process.pid and "socket" in record:
            return process
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the keeper did not start: {log.read_text()}")
        time.sleep(0.02)


def big_history(runner: Runner, scratch: Path, runs: int, count: int) -> dict[str, Any]:
    vault = scratch / "big"
    ensure_layout(vault)
    jobs = "".join(
        f'[jobs.job-{n:02d}]\ncommand = ["true"]\n'
        + (f'cron = "*/{1 + n % 10} * * * *"\n' if n % 3 else 'every = "1h"\n')
        for n in range(50)
    )
    (vault / "watchkeeper.toml").write_text(jobs)
    began = time.perf_counter()
    generate(vault / "Logs" / "history", runs, 30, int(time.time() * 1000), seed=7)
    generated = time.perf_counter() - began
    status = [str(CLI), "--status", "--vault", str(vault)]
    first = runner.time(status, (4,))
    times, cpu, python, python_cpu = [], [], [], []
    for _ in range(count):
        times.append(runner.time(status, (4,)))
        cpu.append(runner.last_cpu)
        python.append(runner.time([sys.executable, "-c", "pass"]))
        python_cpu.append(runner.last_cpu)
    baseline = statistics.median(python)
    return {
        "runs": runs,
        "generated_s": round(generated, 1),
        "first_call_ms": round(first, 1),
        **summary(times, cpu, baseline),
        "python3 -c pass": summary(python, python_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21, help="calls of each command")
    parser.add_argument("--history-runs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="5 calls, 100,000 runs")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.history_runs = 5, 100_000
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="wk-bench-cli-"))
    try:
        runner = Runner(scratch)
        vault = scratch / "vault"
        ensure_layout(vault)
        (vault / "watchkeeper.toml").write_text(CONFIG)
        no_keeper = rounds(runner, quick_commands(runner, vault, keeper=False), args.runs)
        daemon = start_daemon(runner, vault, scratch / "daemon.out")
        try:
            keeper = rounds(runner, quick_commands(runner, vault, keeper=True), args.runs)
        finally:
            stop(daemon, timeout=30)
        status_1m = big_history(runner, scratch, args.history_runs, args.runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    quick = [
        result["median_ms"]
        for results in (no_keeper, keeper)
        for name, result in results.items()
        if name != "python3 -c pass"
    ]
    print(
        json.dumps(
            {
                "bench": "cli_latency",
                "python": sys.executable,
                "calls": args.runs,
                "no_keeper": no_keeper,
                "keeper": keeper,
                "status_big_history": status_1m,
                "targets_ms": {"each_median": TARGET_MS, "status_big_history": TARGET_1M_MS},
                "targets_met": {
                    "each_median": max(quick) < TARGET_MS,
                    "status_big_history": status_1m["median_ms"] < TARGET_1M_MS,
                },
                "loadavg": {"before": load_before, "after": os.getloadavg()},
            }
        )
    )


if __name__ == "__main__":
    main()
