"""Benchmark history queries over a month of runs (~2 lines each); prints one JSON line.

    .venv/bin/python bench/history_query.py [--runs 1000000] [--days 30]

The generated history is cached under /tmp keyed by its parameters, so reruns only
measure. "Now" for the 24 h queries is the end of the generated history, not the
wall clock, so a cached history measures the same window on every rerun.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchkeeper.core.history import Query, RunRecord, recent, stats

FORMAT_VERSION = 2  # bump when the generator changes, so stale caches are not reused
JOBS = 50
REPEATS = 7
TARGETS_MS = {
    "last50_ms": 10.0,
    "failures24h_ms": 50.0,
    "stats24h_ms": 150.0,
    "cli_history50_ms": 400.0,
}
DAY_MS = 86_400_000

# Byte-for-byte RunRecord.to_line(); checked against it before generating.
LINE = (
    '{{"id":"{id}","taskId":"{job}","taskName":"{job}","project":"bench",'
    '"startedAt":{started},"completedAt":{completed},"status":"{status}",'
    '"duration":{duration},"error":{error},"cronExpression":{cron},"worktreeBranch":null,'
    '"trigger":"{trigger}","attempt":1,"exitCode":{exit_code},"files":[],"host":"bench-host"}}\n'
)
FINAL_ERRORS = {
    "success": "null",
    "failure": '"exit code 1"',
    "timeout": '"timed out after 5m"',
    "skipped": '"quota: max_runs_per_hour reached"',
}
EXIT_CODES = {"success": "0", "failure": "1", "timeout": "null", "skipped": "null"}


class Stamps:
    """Epoch milliseconds to RunRecord's ISO form; formatting via datetime is the slow part."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def day(self, ms: int) -> str:
        key = ms // DAY_MS
        if key not in self._days:
            self._days[key] = datetime.fromtimestamp(key * 86_400, UTC).strftime("%Y-%m-%d")
        return self._days[key]

    def iso(self, ms: int) -> str:
        rest = ms % DAY_MS
        hours, rest = divmod(rest, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        return f"{self.day(ms)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+00:00"


def _final_status(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.02:
        return "failure"
    if roll < 0.025:
        return "timeout"
    if roll < 0.035:
        return "skipped"
    return "success"


def _duration_ms(rng: random.Random, status: str) -> int:
    if status == "skipped":
        return 0
    if status == "timeout":
        return 300_000
    if rng.random() < 0.0005:
        return rng.randint(2, 6) * 3_600_000  # the long runs whose end lands hours later
    return int(rng.lognormvariate(math.log(2_000), 1.0))


def _check_template() -> None:
    started = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    record = RunRecord(
        id="abc",
        job="job-01",
        project="bench",
        started_at=started,
        completed_at=started + timedelta(seconds=1),
        status="failure",
        trigger="schedule",
        host="bench-host",
        duration_ms=1000,
        error="exit code 1",
        cron="*/5 * * * *",
        exit_code=1,
    )
    stamps = Stamps()
    started_ms = int(started.timestamp() * 1000)
    line = LINE.format(
        id="abc",
        job="job-01",
        started=f'"{stamps.iso(started_ms)}"',
        completed=f'"{stamps.iso(started_ms + 1000)}"',
        status="failure",
        duration=1000,
        error=FINAL_ERRORS["failure"],
        cron='"*/5 * * * *"',
        trigger="schedule",
        exit_code="1",
    ).encode()
    if line != record.to_line():
        raise SystemExit(
            f"bench template drifted from RunRecord.to_line():\n{line}\n{record.to_line()}"
        )


def generate(directory: Path, runs: int, days: int, end_ms: int, seed: int) -> None:
    """Write `runs` runs (a running line, then a final line) in write order, one file a UTC day.

    Runs are spread evenly over `days` up to `end_ms`; those that would end after it are
    left running, as a live history has them.
    """
    rng = random.Random(seed)
    stamps = Stamps()
    jobs = [f"job-{n:02d}" for n in range(JOBS)]
    crons = {job: (f'"*/{1 + n % 10} * * * *"' if n % 3 else "null") for n, job in enumerate(jobs)}
    span = days * DAY_MS
    step = span / runs
    pending: list[tuple[int, int, str]] = []  # (end_ms, seq, final line) not yet written
    out = None
    out_day = -1

    def emit(write_ms: int, line: str) -> None:
        nonlocal out, out_day
        if write_ms // DAY_MS != out_day:
            if out is not None:
                out.close()
            out_day = write_ms // DAY_MS
            out = open(directory / f"{stamps.day(write_ms)}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        out.write(line)

    start0 = end_ms - span
    for seq in range(runs):
        started = start0 + int(seq * step + rng.random() * step)
        while pending and pending[0][0] <= started:
            end, _, line = heapq.heappop(pending)
            emit(end, line)
        job = jobs[rng.randrange(JOBS)]
        status = _final_status(rng)
        duration = _duration_ms(rng, status)
        run_id = f"{rng.getrandbits(64):016x}"
        trigger = "schedule" if crons[job] != "null" else "file"
        fields = {
            "id": run_id,
            "job": job,
            "started": f'"{stamps.iso(started)}"',
            "cron": crons[job],
            "trigger": trigger,
        }
        emit(
            started,
            LINE.format(
                **fields,
                completed="null",
                status="running",
                duration="null",
                error="null",
                exit_code="null",
            ),
        )
        end = started + duration
        final = LINE.format(
            **fields,
            completed=f'"{stamps.iso(end)}"',
            status=status,
            duration=duration,
            error=FINAL_ERRORS[status],
            exit_code=EXIT_CODES[status],
        )
        if end <= started:
            emit(end, final)
        else:
            heapq.heappush(pending, (end, seq, final))
    while pending and pending[0][0] <= end_ms:
        end, _, line = heapq.heappop(pending)
        emit(end, line)
    # What is left is still running "now": those runs have only their running line.
    if out is not None:
        out.close()


def cached_history(runs: int, days: int, seed: int) -> tuple[Path, datetime]:
    root = Path(tempfile.gettempdir()) / f"wk-bench-history-v{FORMAT_VERSION}-{runs}-{days}-{seed}"
    meta = root / "meta.json"
    if meta.exists():
        return root / "history", datetime.fromisoformat(json.loads(meta.read_text())["end"])
    shutil.rmtree(root, ignore_errors=True)
    (root / "history").mkdir(parents=True)
    end_ms = int(time.time() * 1000)
    generate(root / "history", runs, days, end_ms, seed)
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    meta.write_text(json.dumps({"end": end.isoformat()}))  # written last: marks the cache complete
    return root / "history", end


def measure(action: Callable[[], object]) -> tuple[float, float]:
    """Median wall and CPU milliseconds of REPEATS runs; CPU shows the cost on a busy box."""
    action()  # warm the page cache and imports; the keeper's reads are warm too
    wall, cpu = [], []
    for _ in range(REPEATS):
        began, began_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
    return round(statistics.median(wall), 2), round(statistics.median(cpu), 2)


def measure_cli(directory: Path) -> tuple[float, float]:
    """`watchkeeper history --limit 50` end to end, interpreter start included."""
    with tempfile.TemporaryDirectory() as temp:
        vault = Path(temp)
        (vault / "Logs").mkdir()
        (vault / "Logs" / "history").symlink_to(directory)
        (vault / "watchkeeper.toml").write_text('[jobs.a]\ncommand = ["true"]\n')
        command = [str(Path(sys.executable).parent / "watchkeeper"), "history", "--limit", "50"]

        def run() -> None:
            done = subprocess.run(
                [*command, "--vault", str(vault)], capture_output=True, text=True, check=True
            )
            if done.stdout.count("\n") < 51:
                raise RuntimeError(f"CLI printed too little:\n{done.stdout}")

        return measure(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    _check_template()
    directory, end = cached_history(args.runs, args.days, args.seed)
    day_ago = end - timedelta(hours=24)
    queries: dict[str, Callable[[], object]] = {
        "last50_ms": lambda: recent(directory, Query(limit=50)),
        "failures24h_ms": lambda: recent(directory, Query(status="failure", since=day_ago)),
        "stats24h_ms": lambda: stats(directory, day_ago),
    }
    timings = {key: measure(action) for key, action in queries.items()}
    timings["cli_history50_ms"] = measure_cli(directory)

    # Guard against measuring a wrong or empty answer fast.
    last50 = recent(directory, Query(limit=50))
    failures = recent(directory, Query(status="failure", since=day_ago, limit=50))
    per_job = stats(directory, day_ago)
    sane = (
        len(last50.records) == min(50, args.runs)
        and last50.bad_lines == failures.bad_lines == 0
        and all(r.status == "failure" and r.started_at >= day_ago for r in failures.records)
        and len(per_job) > 0
    )
    met = sane and all(timings[key][0] < limit for key, limit in TARGETS_MS.items())
    result = {
        "bench": "history_query",
        "records": args.runs,
        **{key: wall for key, (wall, _) in timings.items()},
        # In-process CPU time; the CLI runs in a child, so its CPU is not ours to count.
        "cpu": {key: cpu for key, (_, cpu) in timings.items() if not key.startswith("cli")},
        "answers_ok": sane,
        "targets_met": met,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
