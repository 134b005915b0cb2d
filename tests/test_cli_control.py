"""The CLI acting through a running keeper (`--daemon`, a second process), and locally
when none runs: each output says which."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime

from conftest import final_records, run_cli, wait_for

JOBS = """
[keeper]
shutdown_grace = "1s"
[jobs.ok]
command = ["sh", "-c", "echo fine"]
[jobs.broken]
command = ["sh", "-c", "exit 4"]
[jobs.slow]
command = ["sleep", "60"]
[jobs.tick]
command = ["true"]
every = "150ms"
[jobs.hourly]
command = ["true"]
every = "1h"
"""


def through(pid: int) -> str:
    return f"(through keeper pid {pid})"


def test_run_wait_and_cancel_go_through_the_keeper(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    process = daemon(vault)
    v = ("--vault", str(vault))

    done = run_cli("run", "ok", "--wait", *v)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("✔ success  ok  run ")
    assert done.stdout.rstrip().endswith(through(process.pid))

    failed = run_cli("run", "broken", "--wait", *v)
    assert failed.returncode == 1
    assert failed.stdout.startswith("✘ failure  broken  run ")

    started = run_cli("run", "slow", *v)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    assert started.stdout == f"started run {run_id} of slow {through(process.pid)}\n"
    wait_for(lambda: final_records(vault).get(run_id, {}).get("status") == "running")

    cancelled = run_cli("cancel", run_id, *v)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"cancelled run {run_id} {through(process.pid)}\n"
    wait_for(lambda: final_records(vault)[run_id]["status"] == "cancelled")

    again = run_cli("cancel", run_id, *v)
    assert again.returncode == 2
    assert f"no run {run_id} in flight, queued or waiting to retry" in again.stderr

    unknown = run_cli("run", "nope", *v)
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr
    assert process.poll() is None


def test_status_and_jobs_come_from_the_keeper_while_it_runs(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    process = daemon(vault)
    v = ("--vault", str(vault))
    run_cli("run", "slow", *v)

    status = json.loads(run_cli("--status", "--json", *v).stdout)
    assert status["source"] == "keeper"
    assert status["keeper"]["pid"] == process.pid and status["keeper"]["state"] == "RUNNING"
    # tick (every 150 ms) may be in flight too on a busy box; slow certainly is.
    assert status["keeper"]["runs_in_flight"] >= 1
    slow = next(job for job in status["jobs"] if job["name"] == "slow")
    assert len(slow["running"]) == 1

    text = run_cli("--status", *v)
    assert text.returncode == 0  # a keeper runs: healthy
    assert f"pid {process.pid}" in text.stdout
    assert re.search(r"RUNNING, [1-9]\d* run\(s\) in flight", text.stdout), text.stdout

    jobs = run_cli("jobs", "--json", *v)
    assert jobs.stderr == f"watchkeeper: through keeper pid {process.pid}\n"
    tick = next(job for job in json.loads(jobs.stdout) if job["name"] == "tick")
    assert tick["next_run"] is not None  # an interval slot: only the keeper knows it
    hourly = next(job for job in json.loads(jobs.stdout) if job["name"] == "hourly")
    described = json.loads(run_cli("describe", "hourly", "--json", *v).stdout)
    # describe takes the interval's phase from the keeper, as the console's job screen does.
    slots = [datetime.fromisoformat(fire["time"]) for fire in described["next"]]
    keeper_slot = datetime.fromisoformat(hourly["next_run"])
    assert abs((slots[0] - keeper_slot).total_seconds()) < 1
    assert (slots[1] - slots[0]).total_seconds() == 3600

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    stopped = run_cli("--status", "--json", *v)
    assert stopped.returncode == 4
    offline = json.loads(stopped.stdout)
    assert offline["source"] == "files" and offline["keeper"]["running"] is False
    jobs = run_cli("jobs", *v)
    assert "no keeper running" in jobs.stderr


def test_resume_preview_through_the_keeper_lists_the_missed_run_and_changes_nothing(
    make_vault, daemon
) -> None:
    vault = make_vault(JOBS)
    process = daemon(vault)
    v = ("--vault", str(vault))
    assert run_cli("pause", "tick", *v).stdout == f"paused tick {through(process.pid)}\n"
    again = run_cli("pause", "tick", *v)
    assert again.returncode == 0
    assert again.stdout == f"tick is already paused {through(process.pid)}\n"
    log = vault / "Logs" / "watchkeeper.log"
    wait_for(lambda: "tick paused" in log.read_text())

    def missed() -> int:
        jobs = json.loads(run_cli("jobs", "--json", *v).stdout)
        return next(job for job in jobs if job["name"] == "tick")["missed_while_paused"]

    wait_for(lambda: missed() >= 2)
    preview = run_cli("resume", "tick", "--preview", *v)
    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert lines[0] == "resuming tick makes 1 job(s) active again"
    assert lines[1] == "runs it releases:"
    assert lines[2].startswith("  tick  ")
    assert lines[2].endswith(
        "slot(s) missed while paused: one catch-up run -> starts  [missed: optional]"
    )
    assert lines[-1] == f"preview: nothing changed {through(process.pid)}"
    assert missed() >= 2  # still paused, still counting

    resumed = run_cli("resume", "tick", "--skip-missed", *v)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    # What is printed is what happens: the missed run is left out, not started.
    assert lines[2].startswith("  tick  ")
    assert lines[2].endswith("no catch-up run -> left out  [missed: optional]")
    assert not [line for line in lines if "-> starts" in line]
    assert lines[-1] == f"resumed tick {through(process.pid)}; left out 1 missed run(s)"
    not_paused = run_cli("resume", "tick", *v)
    assert not_paused.stdout.splitlines()[-1] == (
        f"nothing to resume: tick is not paused {through(process.pid)}"
    )
    wait_for(lambda: "missed while paused left out" in log.read_text())
    assert not [r for r in final_records(vault).values() if r["trigger"] == "catch_up"]


def test_without_a_keeper_the_cli_acts_locally_and_says_so(make_vault) -> None:
    vault = make_vault(JOBS)
    v = ("--vault", str(vault))
    local = run_cli("run", "ok", *v)
    assert local.returncode == 0 and local.stdout.rstrip().endswith("(locally)")
    cancel = run_cli("cancel", "1a2b-3c", *v)
    assert cancel.returncode == 2
    assert "no keeper is running, so no run is in flight" in cancel.stderr
    paused = run_cli("pause", "tick", *v)
    assert paused.stdout == "paused tick (no keeper running; applies when one starts)\n"
    preview = run_cli("resume", "tick", "--preview", *v)
    assert "no keeper is running: nothing starts until one does" in preview.stdout
