"""Phase disk: Logs/ on a small tmpfs, filled up for a while as runs go on, then freed.

Every run whose command started must end with exactly one final history record once the
disk has room again (the keeper keeps unwritten lines and writes them late), each file
handed meanwhile must get its outcome in the ledger, and a restart afterwards must not
hand those files again. Mounting needs root: without it the phase is skipped with a note.
"""

from __future__ import annotations

import errno
import random
import subprocess
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
    log_lines_with,
    record_problems,
    run_processes,
    seen_runs,
    status_ok,
    tracebacks,
    wait_until,
)

from watchkeeper.core.vault import ensure_layout

TMPFS_SIZE = "8m"


def config(seen: Path) -> str:
    def cmd(script: str) -> str:
        return job_command(seen, script)

    return f"""\
[keeper]
max_parallel = 6
log_max_size = "1MB"
log_backups = 1
kill_grace = "1s"
shutdown_grace = "5s"

[jobs.beat]
command = {cmd("echo beat; echo more output")}
every = "200ms"

[jobs.failing]
command = {cmd("echo failing; exit 1")}
every = "1s"
retries = 1
retry_delay = "100ms"

[jobs.files]
command = {cmd("sleep 0.1")}
on_files = ["Inbox/*.md"]
overlap = "queue"
settle = "200ms"
"""


def fill(path: Path) -> int:
    """Append to `path` until the file system says ENOSPC; the bytes added."""
    added = 0
    with path.open("ab", buffering=0) as handle:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    added += handle.write(chunk) or 0
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return added


def run(work: Path, quick: bool, rng: random.Random) -> dict[str, Any]:
    vault = work / "disk-vault"
    logs = vault / "Logs"
    logs.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(logs)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = (mounted.stderr or "mount failed").strip()
        return {"skipped": f"cannot mount a tmpfs on Logs/ ({reason}); run as root", "problems": []}
    try:
        return _full_disk(work, vault, quick, rng)
    finally:
        if subprocess.run(["umount", str(logs)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(logs)], capture_output=True)


def _full_disk(work: Path, vault: Path, quick: bool, rng: random.Random) -> dict[str, Any]:
    ensure_layout(vault)
    seen = work / "disk-seen.txt"
    (vault / "watchkeeper.toml").write_text(config(seen))
    output = work / "disk-daemon.out"
    problems: list[str] = []
    daemon = Daemon.start(vault, output)
    keepers = [daemon.pid]
    if not daemon.wait_serving():
        return {"problems": [f"the keeper did not start: see {output}"]}
    time.sleep(2.0)
    filler = vault / "Logs" / "filler"
    full_for = 4.0 if quick else 10.0
    before = set(seen_runs(seen))
    dropped: list[str] = []
    probes = answered = 0
    filled = fill(filler)
    began = time.monotonic()
    while time.monotonic() - began < full_for:
        name = f"full-{len(dropped):03d}-{rng.getrandbits(24):06x}.md"
        staging = work / name
        staging.write_text(f"dropped while Logs/ is full: {name}\n")
        staging.rename(vault / "Inbox" / name)
        dropped.append(f"Inbox/{name}")
        probes += 1
        answered += status_ok(daemon.socket_path(), timeout=5.0)
        fill(filler)  # whatever the keeper freed (a rotation, a temp file) is taken again
        time.sleep(0.3)
    during = set(seen_runs(seen)) - before
    alive_when_full = daemon.alive()
    if not alive_when_full:
        problems.append(f"the keeper died while Logs/ was full (exit {daemon.process.poll()})")
    filler.unlink()
    freed = time.monotonic()

    def recovered() -> bool:
        history = History.read(vault)
        return all(history.finals(run_id) for run_id in seen_runs(seen))

    wrote_late = wait_until(recovered, timeout=30.0, interval=0.2)
    recovery = round(time.monotonic() - freed, 1)

    def files_done() -> bool:
        outcomes = ledger_outcomes(vault)
        return all("success" in outcomes.get(("files", rel), []) for rel in dropped)

    wait_until(files_done, timeout=30.0, interval=0.2)
    stop_code = daemon.stop()
    if stop_code != 0:
        problems.append(f"the clean stop after the full disk exited {stop_code}")
    # A restart must not hand again what was handed while the ledger could not be written.
    again = Daemon.start(vault, output)
    keepers.append(again.pid)
    if again.wait_serving():
        time.sleep(3.0)
    again.stop()
    leftovers = run_processes(vault, keepers)
    problems += [f"orphan: {process}" for process in leftovers[:10]]
    end_processes(leftovers)

    history = History.read(vault)
    runs = seen_runs(seen)
    problems += record_problems(history, runs)
    lost = [run_id for run_id in runs if not history.finals(run_id)]
    outcomes = ledger_outcomes(vault)
    unsettled = [rel for rel in dropped if "success" not in outcomes.get(("files", rel), [])]
    problems += [f"file {rel} has no outcome in files.jsonl" for rel in unsettled[:10]]
    handed = handed_counts(history)
    twice = [rel for rel in dropped if handed.get(rel, 0) > 1]
    problems += [f"file {rel} handed {handed[rel]} times" for rel in twice[:10]]
    log = vault / "Logs" / "watchkeeper.log"
    problems += [f"traceback: {found}" for found in tracebacks(output, log)]
    return {
        "tmpfs": TMPFS_SIZE,
        "filled_bytes": filled,
        "full_seconds": full_for,
        "runs_started_while_full": len(during),
        "records_lost": len(lost),
        "records_written_late_within_30s": wrote_late,
        "recovery_seconds": recovery,
        "files_dropped_while_full": len(dropped),
        "files_without_outcome": len(unsettled),
        "files_handed_twice": len(twice),
        "status_answered_while_full": f"{answered}/{probes}",
        "keeper_alive_while_full": alive_when_full,
        # What the keeper said about it (core/appender.py's wording).
        "log_notes_written_late": log_lines_with(log, " late after: "),
        "log_notes_lost": log_lines_with(log, "lost, never written"),
        "clean_stop_exit": stop_code,
        "statuses": history.statuses(),
        "history_bad_lines": history.bad_lines,
        "orphans": len(leftovers),
        "problems": problems,
    }
