"""Fire lateness of the keeper against APScheduler 3.x on the same work; prints one JSON line.

    .venv/bin/python bench/fire_lateness.py [--quick] [--scenario NAME] [--rounds N]

Every job runs /bin/true. Lateness = the moment the child exists (Popen has returned, so
its pid is alive) minus the slot's due time. Each (scenario, scheduler) pair runs in a
fresh subprocess (this file with --worker), so CPU time and RSS belong to one scheduler
doing one scenario, and the keeper worker shows that a headless keeper never imports
textual. The keeper runs headless ("wk", the headline) and again with one event
subscriber drained as fast as the loop allows, as an attached console would
("wk_console"). CPU% is the worker's own user+system time (all threads) over the
measured window, as a percentage of one core; children are not counted.

APScheduler is not a project dependency: it is pip-installed once into APS_DIR and put on
sys.path inside its own workers only. Its jobs run under BackgroundScheduler with the
default ThreadPoolExecutor (10 threads; the headline) and again with 100 threads, with
coalesce off, no misfire limit and max_instances high, so it never drops a slot.

Spawn latency depends on free CPUs, so each worker waits for a quiet machine first and
reports how busy the rest of the machine was meanwhile (other_load_pct). Even so one
worker's p99 swings twofold from run to run, so each fire scenario runs in rounds (3 by
default) that interleave the implementations; an implementation's result is its median
round, with missed slots summed over all rounds, maxima from the worst round, and each
round listed under "rounds". A full run takes about 12 minutes on 2 CPUs; --quick (one
round, short windows) about 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import queue
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

APS_DIR = Path("/tmp/wk-bench-apscheduler")
APS_REQUIREMENT = "apscheduler>=3.11,<4"
CHILD = ["/bin/true"]
LEAD = 1.0  # setup is done this long before the first slot
IDLE_JOBS = 10_000
CPUS = os.cpu_count() or 1
QUIET_PCT = 10.0  # a worker starts once the machine is at most this busy ...
QUIET_WAIT_S = 60.0  # ... or after waiting this long (other_load_pct then tells)
IDLE_SETTLE = 5.0
FIRE_SCENARIOS = ("every1s_100", "every1s_1000", "same_instant_1000")
SCENARIOS = (*FIRE_SCENARIOS, "idle_10000_hourly")
FIRE_IMPLS = ("wk", "wk_console", "aps", "aps_pool100")
IDLE_IMPLS = ("wk", "aps", "wk_cron", "aps_cron")
# What each round of a fire scenario shows besides the combined result.
ROUND_KEYS = ("p99_ms", "max_ms", "missed", "cpu_pct", "other_load_pct")


@dataclass(frozen=True)
class Fire:
    """Job i's slots are due at d0 + phase(i) + k * interval for k = 0, 1, ..."""

    jobs: int
    interval: float
    stagger: bool  # phases spread evenly over one interval; else all due at the same instant
    warmup: float  # slots due before d0 + warmup are run but not measured (cold start)
    window: float  # slots due in [d0 + warmup, d0 + warmup + window) are measured

    def phase(self, index: int) -> float:
        return index * self.interval / self.jobs if self.stagger else 0.0

    @property
    def start(self) -> float:
        return self.warmup

    @property
    def end(self) -> float:
        return self.warmup + self.window

    @property
    def drain(self) -> float:
        # A slot more than one interval late is skipped by the keeper anyway, so by then
        # every measured slot has either started or been missed.
        return 1.5 * self.interval


def fire_plan(scenario: str, quick: bool) -> Fire:
    if scenario == "same_instant_1000":
        # Bursts of 1000 every 3 s (one with --quick): the top-of-the-hour pile-up.
        bursts = 1 if quick else 3
        return Fire(1000, 3.0, stagger=False, warmup=0.0, window=bursts * 3.0)
    jobs = int(scenario.removeprefix("every1s_"))
    return Fire(jobs, 1.0, stagger=True, warmup=1.0, window=3.0 if quick else 10.0)


# ---- measuring -----------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)


@dataclass
class CpuWindow:
    cpu0: float = 0.0
    wall0: float = 0.0
    cpu_pct: float = 0.0

    def begin(self) -> None:
        self.cpu0, self.wall0 = cpu_seconds(), time.monotonic()

    def finish(self) -> None:
        elapsed = time.monotonic() - self.wall0
        self.cpu_pct = round(100 * (cpu_seconds() - self.cpu0) / elapsed, 3)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest rank."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(plan: Fire, samples: list[tuple[int, float, float]]) -> dict[str, Any]:
    """samples: (job index, due relative to d0 (may be approximate), lateness in s).

    A due time is snapped to the job's nearest slot, so a slightly off estimate still names
    the right slot; missed = measured slots that never started (skipped, or so late that
    they had not started when the run ended)."""
    started: dict[tuple[int, int], float] = {}
    for index, due, lateness in samples:
        slot = round((due - plan.phase(index)) / plan.interval)
        exact = plan.phase(index) + slot * plan.interval
        if plan.start <= exact + 1e-9 < plan.end:
            started[(index, slot)] = lateness
    expected = sum(
        math.ceil((plan.end - plan.phase(i)) / plan.interval - 1e-9)
        - math.ceil((plan.start - plan.phase(i)) / plan.interval - 1e-9)
        for i in range(plan.jobs)
    )
    lateness_ms = sorted(value * 1000 for value in started.values())
    result: dict[str, Any] = {
        "p50_ms": round(percentile(lateness_ms, 0.50), 3) if lateness_ms else None,
        "p99_ms": round(percentile(lateness_ms, 0.99), 3) if lateness_ms else None,
        "max_ms": round(lateness_ms[-1], 3) if lateness_ms else None,
        "missed": expected - len(started),
        "runs": len(started),
        "expected": expected,
    }
    if not plan.stagger:
        # Per burst: how long after the shared due instant the last child was spawned.
        bursts: dict[int, float] = {}
        for (_, slot), lateness in started.items():
            bursts[slot] = max(bursts.get(slot, 0.0), lateness)
        result["last_spawn_ms"] = round(max(bursts.values()) * 1000, 3) if bursts else None
    return result


# ---- watchkeeper workers ------------------------------------------------------------------


def keeper_toml(jobs: int, trigger: str) -> str:
    # max_parallel above the job count so the parallel cap never throttles, and logs big
    # enough that rotation stays out of the measurement.
    lines = ["[keeper]", "max_parallel = 2000", 'log_max_size = "1GB"', "log_backups = 1", ""]
    for index in range(jobs):
        lines += [f"[jobs.j{index:05d}]", 'command = ["/bin/true"]', trigger, ""]
    return "\n".join(lines)


def headless_check() -> bool:
    """True if textual was imported; a headless keeper must never import it."""
    imported = "textual" in sys.modules
    assert not imported, "the headless keeper imported textual"
    return imported


async def keeper_fire(plan: Fire, console: bool) -> dict[str, Any]:
    """console: one event subscriber drained as fast as the loop lets it, as an attached
    console would; without it the keeper is the headless daemon."""
    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.daemon import freeze_startup, tune_process
    from watchkeeper.core.keeper import Keeper, StartRequest
    from watchkeeper.core.runtime import ActiveRun
    from watchkeeper.core.seams import Started

    vault = Path(tempfile.mkdtemp(prefix="wk-bench-vault-"))
    try:
        trigger = f'every = "{plan.interval:g}s"'
        (vault / CONFIG_NAME).write_text(keeper_toml(plan.jobs, trigger))
        keeper = Keeper(load_config(vault / CONFIG_NAME))
        tune_process()  # as run_daemon() does
        await keeper.start()
        freeze_startup()
        textual = headless_check()
        # The keeper's EverySchedule puts every job's first slot at start + interval. A real
        # fleet of jobs started at different times has its phases spread out; re-seeding the
        # first slots evenly over one interval gives the bench that fleet.
        d0 = time.monotonic() + LEAD
        index: dict[str, int] = {}
        keeper.slots.heaps["mono"].clear()
        for i, runtime in enumerate(keeper.jobs.values()):
            due = d0 + plan.phase(i)
            runtime.next_due[0] = due
            keeper.slots.push("mono", due, runtime.name, 0)
            index[runtime.name] = i
        samples: list[tuple[int, float, float]] = []
        skipped: dict[str, int] = {}
        # Runs are read as the keeper takes them back from the executor, not through an
        # event subscription: the headless daemon builds no events, as nobody listens.

        def started(active: ActiveRun, run: Started) -> None:
            request = active.request
            if request.trigger == "schedule" and request.due_mono is not None:
                lateness = run.started_mono - request.due_mono
                samples.append((index[request.job], request.due_mono - d0, lateness))

        def never_started(request: StartRequest, status: str, reason: str) -> None:
            # Why a slot was refused (overlap, quota...); a slot the schedule skipped for
            # being over an interval late leaves no record and shows only in missed.
            if status == "skipped":
                kind = re.sub(r"\brun \S+", "run …", reason)
                skipped[kind] = skipped.get(kind, 0) + 1

        keeper.runs.on_started.append(started)
        keeper.runs.on_never_started.append(never_started)
        tasks = [asyncio.create_task(keeper.serve())]
        if console:
            subscription = keeper.bus.subscribe(maxsize=10_000)  # as core/client.py does

            async def consume() -> None:
                while True:
                    await subscription.get()
                    while subscription.get_nowait() is not None:
                        pass

            tasks.append(asyncio.create_task(consume()))
        cpu = CpuWindow()
        await asyncio.sleep(max(0.0, d0 + plan.start - time.monotonic()))
        cpu.begin()
        await asyncio.sleep(max(0.0, d0 + plan.end - time.monotonic()))
        cpu.finish()
        rss, peak = memory_mb()
        await asyncio.sleep(max(0.0, d0 + plan.end + plan.drain - time.monotonic()))
        await keeper.stop(grace=5.0)
        for task in tasks[1:]:
            task.cancel()
        await tasks[0]
        if not samples:
            raise RuntimeError("no run seen: the bench's on_started observer heard nothing")
        return {
            **summarize(plan, samples),
            "cpu_pct": cpu.cpu_pct,
            "rss_mb": rss,
            "peak_rss_mb": peak,
            "textual_imported": textual,
            **({"skipped_records": skipped} if skipped else {}),
        }
    finally:
        shutil.rmtree(vault, ignore_errors=True)


async def keeper_idle(cron: bool, window: float) -> dict[str, Any]:
    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.daemon import freeze_startup, tune_process
    from watchkeeper.core.keeper import Keeper

    vault = Path(tempfile.mkdtemp(prefix="wk-bench-vault-"))
    try:
        trigger = 'cron = "0 * * * *"' if cron else 'every = "1h"'
        (vault / CONFIG_NAME).write_text(keeper_toml(IDLE_JOBS, trigger))
        setup = time.monotonic()
        keeper = Keeper(load_config(vault / CONFIG_NAME))
        tune_process()  # as run_daemon() does
        await keeper.start()
        freeze_startup()
        serving = asyncio.create_task(keeper.serve())
        setup_s = round(time.monotonic() - setup, 3)
        textual = headless_check()
        await asyncio.sleep(IDLE_SETTLE)
        cpu = CpuWindow()
        cpu.begin()
        await asyncio.sleep(window)
        cpu.finish()
        rss, peak = memory_mb()
        await keeper.stop(grace=5.0)
        await serving
        return {
            "cpu_pct": cpu.cpu_pct,
            "rss_mb": rss,
            "peak_rss_mb": peak,
            "setup_s": setup_s,
            "textual_imported": textual,
        }
    finally:
        shutil.rmtree(vault, ignore_errors=True)


# ---- APScheduler workers ------------------------------------------------------------------


def aps_scheduler(threads: int) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1000},
        timezone=UTC,
    )


class DueTimes(logging.Filter):
    """APScheduler 3.x does not hand a job its scheduled time, but its executor logs
    'Running job "%s" (scheduled at %s)' in the worker thread right before calling the job.
    This filter keeps that time for the thread and drops every record (nothing is printed)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and str(record.msg).startswith("Running job"):
            self.local.due = record.args[1].timestamp()
        return False


def aps_fire(plan: Fire, threads: int) -> dict[str, Any]:
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = aps_scheduler(threads)
    dues = DueTimes()
    executor_log = logging.getLogger("apscheduler.executors.default")
    executor_log.setLevel(logging.INFO)
    executor_log.addFilter(dues)
    children: queue.SimpleQueue[subprocess.Popen[bytes] | None] = queue.SimpleQueue()
    samples: list[tuple[int, float, float]] = []

    def reap() -> None:
        while (child := children.get()) is not None:
            child.wait()

    reaper = threading.Thread(target=reap, name="reaper")
    reaper.start()
    d0 = time.time() + LEAD + 0.5  # adding 1000 jobs takes a moment too

    def fire(index: int) -> None:
        child = subprocess.Popen(CHILD)
        spawned = time.time()
        due = dues.local.due
        samples.append((index, due - d0, spawned - due))
        children.put(child)

    for i in range(plan.jobs):
        start = datetime.fromtimestamp(d0 + plan.phase(i), UTC)
        trigger = IntervalTrigger(seconds=plan.interval, start_date=start, timezone=UTC)
        scheduler.add_job(fire, trigger, args=(i,), id=f"j{i:05d}")
    scheduler.start()
    cpu = CpuWindow()
    time.sleep(max(0.0, d0 + plan.start - time.time()))
    cpu.begin()
    time.sleep(max(0.0, d0 + plan.end - time.time()))
    cpu.finish()
    rss, peak = memory_mb()
    time.sleep(max(0.0, d0 + plan.end + plan.drain - time.time()))
    measured = list(samples)
    scheduler.shutdown(wait=True)
    children.put(None)
    reaper.join()
    return {**summarize(plan, measured), "cpu_pct": cpu.cpu_pct, "rss_mb": rss, "peak_rss_mb": peak}


def aps_idle(cron: bool, window: float) -> dict[str, Any]:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    setup = time.monotonic()
    scheduler = aps_scheduler(10)
    for i in range(IDLE_JOBS):
        trigger = CronTrigger(minute=0, timezone=UTC) if cron else IntervalTrigger(hours=1)
        scheduler.add_job(subprocess.Popen, trigger, args=(CHILD,), id=f"j{i:05d}")
    scheduler.start()
    setup_s = round(time.monotonic() - setup, 3)
    time.sleep(IDLE_SETTLE)
    cpu = CpuWindow()
    cpu.begin()
    time.sleep(window)
    cpu.finish()
    rss, peak = memory_mb()
    scheduler.shutdown(wait=False)
    return {"cpu_pct": cpu.cpu_pct, "rss_mb": rss, "peak_rss_mb": peak, "setup_s": setup_s}


def worker(scenario: str, impl: str, quick: bool) -> dict[str, Any]:
    # Each side imports only its own scheduler: the keeper from the project's install,
    # APScheduler from its cache directory, which only its own workers put on sys.path.
    if impl.startswith("aps"):
        sys.path.insert(0, str(APS_DIR))
    window = 5.0 if quick else 20.0
    if scenario == "idle_10000_hourly":
        cron = impl.endswith("_cron")
        if impl.startswith("wk"):
            return asyncio.run(keeper_idle(cron, window))
        return aps_idle(cron, window)
    plan = fire_plan(scenario, quick)
    if impl.startswith("wk"):
        return asyncio.run(keeper_fire(plan, console=impl == "wk_console"))
    return aps_fire(plan, 100 if impl == "aps_pool100" else 10)


# ---- driver ---------------------------------------------------------------------------------


def ensure_apscheduler() -> None:
    if list(APS_DIR.glob("apscheduler-3.*.dist-info")):
        return
    print(f"installing {APS_REQUIREMENT} into {APS_DIR}", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(APS_DIR),
            APS_REQUIREMENT,
        ],
        check=True,
    )


def machine_cpu_seconds() -> float:
    """CPU time spent by everything on the machine so far (idle and iowait excluded)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_pct(seconds: float = 1.0) -> float:
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return round(100 * (machine_cpu_seconds() - before) / (seconds * CPUS), 1)


def wait_quiet() -> float:
    """Spawn latency depends on free CPUs (a vfork parent waits until its child gets one
    to exec on), so each worker starts once other work leaves the machine quiet, or after
    QUIET_WAIT_S anyway. Returns the last busy% seen."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while (busy := busy_pct()) > QUIET_PCT and time.monotonic() < deadline:
        print(f"    machine {busy}% busy: waiting for it to quiet down", file=sys.stderr)
    return busy


def run_worker(scenario: str, impl: str, quick: bool) -> dict[str, Any]:
    busy_before = wait_quiet()
    print(f"  {scenario} / {impl} ...", file=sys.stderr, flush=True)
    argv = [sys.executable, __file__, "--worker", scenario, "--impl", impl]
    machine0, children0, wall0 = machine_cpu_seconds(), children_cpu_seconds(), time.monotonic()
    result = subprocess.run(
        [*argv, "--quick"] if quick else argv, stdout=subprocess.PIPE, text=True, check=True
    )
    # CPU the rest of the machine used meanwhile: all CPU time minus the worker's and its
    # children's (a reaped process's time rolls up to its parent's RUSAGE_CHILDREN).
    others = (machine_cpu_seconds() - machine0) - (children_cpu_seconds() - children0)
    data = {
        **json.loads(result.stdout.strip().splitlines()[-1]),
        "machine_busy_before_pct": busy_before,
        "other_load_pct": round(max(0.0, 100 * others / ((time.monotonic() - wall0) * CPUS)), 1),
    }
    print(f"    {json.dumps(data)}", file=sys.stderr, flush=True)
    return data


def seconds_to_next_hour() -> float:
    # Whole-hour boundaries coincide in every zone whose offset is whole hours; the local
    # offset covers the others (cron runs in the machine's zone by default).
    now = datetime.now().astimezone()
    offset = now.utcoffset()
    local = now.timestamp() + (offset.total_seconds() if offset else 0.0)
    return 3600 - local % 3600


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One implementation's rounds of a scenario as one result: the median round for
    latency, CPU and memory (one round's p99 swings twofold with whatever else the box
    does), but every slot of every round for missed, and the worst round for the maxima."""
    if len(runs) == 1:
        return runs[0]
    # skipped_records is there only in rounds that skipped something.
    firsts: dict[str, Any] = {}
    for run in runs:
        for key, value in run.items():
            firsts.setdefault(key, value)
    result: dict[str, Any] = {}
    for key, first in firsts.items():
        values = [run.get(key, {}) if isinstance(first, dict) else run[key] for run in runs]
        if key in ("missed", "runs", "expected"):
            result[key] = sum(values)
        elif key in ("max_ms", "last_spawn_ms", "peak_rss_mb") and None not in values:
            result[key] = max(values)
        elif isinstance(first, bool):
            result[key] = any(values)
        elif isinstance(first, (int, float)) and None not in values:
            result[key] = round(statistics.median(values), 3)
        elif isinstance(first, dict):  # skipped_records: counts by reason
            merged: dict[str, int] = {}
            for counts in values:
                for reason, count in counts.items():
                    merged[reason] = merged.get(reason, 0) + count
            result[key] = merged
        else:
            result[key] = first
    result["rounds"] = [{key: run[key] for key in ROUND_KEYS if key in run} for run in runs]
    return result


def run_scenario(scenario: str, quick: bool, rounds: int) -> dict[str, Any]:
    if scenario != "idle_10000_hourly":
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in FIRE_IMPLS}
        for number in range(rounds):
            # Rounds interleave the implementations, so a slow spell of the machine hits
            # them alike, and each takes its turn at going first.
            shift = number % len(FIRE_IMPLS)
            for impl in FIRE_IMPLS[shift:] + FIRE_IMPLS[:shift]:
                runs[impl].append(run_worker(scenario, impl, quick))
        result: dict[str, Any] = {impl: combine(runs[impl]) for impl in FIRE_IMPLS}
        result["p99_ratio"] = ratio(result["wk"]["p99_ms"], result["aps"]["p99_ms"])
        result["p99_ratio_pool100"] = ratio(result["wk"]["p99_ms"], result["aps_pool100"]["p99_ms"])
        result["p99_ratio_console"] = ratio(result["wk_console"]["p99_ms"], result["aps"]["p99_ms"])
        return result
    window = 5.0 if quick else 20.0
    result = {}
    for impl in IDLE_IMPLS:
        # 10,000 cron jobs all fire at the top of the hour: keep that out of the window
        # (setup can take several seconds, hence the margin).
        needed = IDLE_SETTLE + window + 60.0
        if impl.endswith("_cron") and seconds_to_next_hour() < needed:
            result[impl] = {"skipped": f"the next hour boundary is under {needed:.0f} s away"}
            continue
        result[impl] = run_worker(scenario, impl, quick)
    return result


def targets(results: dict[str, Any]) -> dict[str, bool]:
    checks: dict[str, bool] = {}

    def check(name: str, condition: Callable[[], bool]) -> None:
        try:
            checks[name] = bool(condition())
        except (KeyError, TypeError):
            checks[name] = False

    if "every1s_100" in results:
        check("every1s_100_p99_lt_5ms", lambda: results["every1s_100"]["wk"]["p99_ms"] < 5)
    if "every1s_1000" in results:
        wk = results["every1s_1000"]["wk"]
        check("every1s_1000_no_missed", lambda: wk["missed"] == 0)
        check("every1s_1000_p99_lt_50ms", lambda: wk["p99_ms"] < 50)
    if "same_instant_1000" in results:
        wk = results["same_instant_1000"]["wk"]
        check(
            "same_instant_1000_all_within_1s",
            lambda: wk["missed"] == 0 and wk["last_spawn_ms"] < 1000,
        )
    for scenario in FIRE_SCENARIOS:
        if scenario in results:
            pair = results[scenario]
            check(
                f"{scenario}_p99_not_worse_than_aps",
                lambda pair=pair: pair["wk"]["p99_ms"] <= pair["aps"]["p99_ms"],
            )
    if "idle_10000_hourly" in results:
        for impl in ("wk", "wk_cron"):
            idle = results["idle_10000_hourly"][impl]
            if "skipped" in idle:
                continue
            check(f"idle_{impl}_cpu_lt_0.1pct", lambda idle=idle: idle["cpu_pct"] < 0.1)
            check(f"idle_{impl}_rss_lt_60mb", lambda idle=idle: idle["rss_mb"] < 60)
            check(
                f"idle_{impl}_textual_not_imported", lambda idle=idle: not idle["textual_imported"]
            )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, for a smoke run")
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of each fire scenario, combined by their median (default 3; 1 with --quick)",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, help="run only this scenario")
    parser.add_argument("--worker", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--impl", choices=sorted({*FIRE_IMPLS, *IDLE_IMPLS}), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.impl, args.quick)))
        return
    rounds = args.rounds or (1 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    ensure_apscheduler()
    output: dict[str, Any] = {
        "bench": "fire_lateness",
        "quick": args.quick,
        "rounds": rounds,
        "cpus": CPUS,
        "python": sys.version.split()[0],
    }
    for scenario in (args.scenario,) if args.scenario else SCENARIOS:
        print(f"{scenario}:", file=sys.stderr, flush=True)
        output[scenario] = run_scenario(scenario, args.quick, rounds)
    checks = targets(output)
    output["targets"] = checks
    output["all_targets_met"] = all(checks.values())
    print(json.dumps(output))


if __name__ == "__main__":
    main()
