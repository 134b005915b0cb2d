"""Phase kill: `watchkeeper --daemon` killed with SIGKILL at random moments under load and
started again each time, then stopped cleanly; the invariants are checked on what is left.

The vault has eleven jobs (interval, cron with seconds, a queue of slow runs, a run that
times out leaving a child behind, a flaky job with retries, a per-job quota, an `after`
chain with a hook, and two `on_files` jobs, one of which fails on some files until they
are quarantined), while a writer drops files into Inbox/ the whole time, keeper up or not.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from chaos_kit import (
    Daemon,
    History,
    end_processes,
    handed_counts,
    job_command,
    ledger_outcomes,
    quota_problems,
    record_problems,
    run_processes,
    seen_runs,
    tracebacks,
    wait_until,
)

from watchkeeper.core.vault import ensure_layout

GLOBAL_LIMIT = 100_000
QUOTA_LIMIT = 40
EARLY_KILLS = 0.15
"""The share of kills that land while the keeper is still starting (closing the runs the
last one left, reading history and the ledger) rather than once it serves."""
FILE_JOBS = {".md": "intake", ".txt": "picky"}
FINAL_FILE_OUTCOMES = ("success", "quarantined")


def config(seen: Path, quota_limit: int) -> str:
    def cmd(script: str) -> str:
        return job_command(seen, script)

    return f"""\
[keeper]
max_parallel = 8
max_runs_per_hour = {GLOBAL_LIMIT}
kill_grace = "1s"
shutdown_grace = "5s"
log_max_size = "256KB"
log_backups = 2

[jobs.tick]
command = {cmd("sleep 0.05")}
every = "500ms"

[jobs.cron-sec]
command = {cmd("sleep 0.3")}
cron = "*/2 * * * * *"

[jobs.slow]
command = {cmd("sleep 1.5")}
every = "2s"
overlap = "queue"

[jobs.stuck]
command = {cmd("sleep 300 & wait")}
every = "3s"
timeout = "1s"

[jobs.flaky]
command = {cmd("sleep 0.1; exit $(($$ % 2))")}
every = "1s"
retries = 2
retry_delay = "200ms"
max_retry_delay = "1s"

[jobs.quota]
command = {cmd("true")}
every = "300ms"
max_per_hour = {quota_limit}

[jobs.chain-a]
command = {cmd("sleep 0.2")}
every = "2s"

[jobs.chain-b]
command = {cmd("sleep 0.2")}
after = ["chain-a"]

[jobs.chain-c]
command = {cmd("sleep 0.2")}
after = ["chain-b"]
on_success = {cmd("true")}

[jobs.intake]
command = {cmd("sleep 0.2")}
on_files = ["Inbox/*.md"]
overlap = "queue"
settle = "300ms"

[jobs.picky]
command = {cmd('case "$WATCHKEEPER_FILES" in *bad*) exit 3;; esac; sleep 0.1')}
on_files = ["Inbox/*.txt"]
overlap = "queue"
settle = "300ms"
quarantine_after = 2
"""


class FileWriter(threading.Thread):
    """Drops uniquely named files into Inbox/: most whole (written beside, renamed in),
    some written in place in two chunks with a pause, as a slow copy would."""

    def __init__(self, vault: Path, rng: random.Random, pause: tuple[float, float]) -> None:
        super().__init__(daemon=True)
        self.vault, self.rng, self.pause = vault, rng, pause
        self.stop = threading.Event()
        self.dropped: list[str] = []

    def run(self) -> None:
        staging = self.vault.parent / "staging"
        staging.mkdir(exist_ok=True)
        while not self.stop.wait(self.rng.uniform(*self.pause)):
            index = len(self.dropped)
            suffix = ".txt" if self.rng.random() < 0.25 else ".md"
            bad = suffix == ".txt" and self.rng.random() < 0.3
            name = f"{index:05d}-{'bad' if bad else 'ok'}-{self.rng.getrandbits(24):06x}{suffix}"
            body = f"file {index}\n" * self.rng.randint(1, 200)
            if self.rng.random() < 0.8:
                (staging / name).write_text(body)
                (staging / name).rename(self.vault / "Inbox" / name)
            else:
                with (self.vault / "Inbox" / name).open("w") as handle:
                    handle.write(body[: len(body) // 2])
                    handle.flush()
                    time.sleep(0.05)
                    handle.write(body[len(body) // 2 :])
            self.dropped.append(f"Inbox/{name}")


def run(work: Path, kills: int, quick: bool, rng: random.Random) -> dict[str, Any]:
    vault = work / "kill-vault"
    ensure_layout(vault)
    seen = work / "kill-seen.txt"
    quota_limit = 15 if quick else QUOTA_LIMIT
    (vault / "watchkeeper.toml").write_text(config(seen, quota_limit))
    output = work / "kill-daemon.out"
    life = (0.2, 1.2) if quick else (0.3, 3.0)
    writer = FileWriter(vault, rng, (0.02, 0.3))
    writer.start()
    problems: list[str] = []
    keepers: list[int] = []
    early = not_serving = 0
    began = time.monotonic()
    for _ in range(kills):
        daemon = Daemon.start(vault, output)
        keepers.append(daemon.pid)
        if rng.random() < EARLY_KILLS:
            early += 1
            time.sleep(rng.uniform(0.0, 0.5))
        elif daemon.wait_serving():
            time.sleep(rng.uniform(*life))
        else:
            not_serving += 1
            problems.append(f"keeper pid {daemon.pid} exited (code {daemon.process.poll()})")
        daemon.kill()
    writer.stop.set()
    writer.join()
    killing = time.monotonic() - began

    final = Daemon.start(vault, output)
    keepers.append(final.pid)
    if not final.wait_serving():
        problems.append(f"the keeper after the last kill did not start: see {output}")

    def all_files_settled() -> bool:
        outcomes = ledger_outcomes(vault)
        return all(
            any(o in FINAL_FILE_OUTCOMES for o in outcomes.get((job_of(rel), rel), []))
            for rel in writer.dropped
        )

    wait_until(all_files_settled, timeout=60 if quick else 180, interval=0.5)
    stop_code = final.stop()
    if stop_code != 0:
        problems.append(f"the clean stop after the kills exited {stop_code}")
    leftovers = run_processes(vault, keepers)
    for process in leftovers[:10]:
        problems.append(f"orphan after the clean stop: {process}")
    end_processes(leftovers)

    history = History.read(vault)
    runs = seen_runs(seen)
    problems += record_problems(history, runs)
    most, quota_issues = quota_problems(history, {"global": GLOBAL_LIMIT, "quota": quota_limit})
    problems += quota_issues
    outcomes = ledger_outcomes(vault)
    unsettled = [
        rel
        for rel in writer.dropped
        if not any(o in FINAL_FILE_OUTCOMES for o in outcomes.get((job_of(rel), rel), []))
    ]
    problems += [f"file {rel} has no final outcome in files.jsonl" for rel in unsettled[:10]]
    if len(unsettled) > 10:
        problems.append(f"... and {len(unsettled) - 10} more files without an outcome")
    logs = (output, vault / "Logs" / "watchkeeper.log")
    problems += [f"traceback: {found}" for found in tracebacks(*logs)]
    handed = handed_counts(history)
    statuses = history.statuses()
    return {
        "kills": kills,
        "kills_while_starting": early,
        "kill_seconds": round(killing, 1),
        "keepers_that_did_not_serve": not_serving,
        "runs": len(history.lines),
        "runs_seen_by_jobs": len(runs),
        "statuses": statuses,
        "history_bad_lines": history.bad_lines,
        "files_dropped": len(writer.dropped),
        "files_without_outcome": len(unsettled),
        "files_quarantined": sum(
            "quarantined" in outcomes.get((job_of(rel), rel), []) for rel in writer.dropped
        ),
        "files_handed_more_than_once": sum(count > 1 for count in handed.values()),
        "files_most_handed": max(handed.values(), default=0),
        "quota_peak": most,
        "quota_limit": quota_limit,
        "orphans": len(leftovers),
        "clean_stop_exit": stop_code,
        "problems": problems,
    }


def job_of(rel: str) -> str:
    return FILE_JOBS[Path(rel).suffix]
