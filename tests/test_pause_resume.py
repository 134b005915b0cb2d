"""Pausing and resuming through the keeper says what it did (or that there was nothing to
do), a paused job shows no next run, and the resume preview is honest: it never crashes
on a full quota and never says `starts` for a run the resume leaves out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
from pathlib import Path

from conftest import finish, run_cli, started_keeper, until, wait_for

from watchkeeper.core import control_client as control
from watchkeeper.core.config import load_config
from watchkeeper.core.state import RuntimeState, save_state
from watchkeeper.core.status import jobs_view


def jobs_json(vault: Path) -> dict[str, dict]:
    result = run_cli("jobs", "--json", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    return {view["name"]: view for view in json.loads(result.stdout)}


def test_pause_and_resume_through_the_keeper_say_when_nothing_changes(make_vault, daemon) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = ["true"]
        every = "150ms"
        [jobs.clock]
        command = ["true"]
        every = "150ms"
        """
    )
    process = daemon(vault)
    through = f"(through keeper pid {process.pid})"
    first = run_cli("pause", "tick", "--vault", str(vault))
    assert first.stdout == f"paused tick {through}\n", first.stderr
    again = run_cli("pause", "tick", "--vault", str(vault))
    assert again.stdout == f"tick is already paused {through}\n", again.stderr
    assert control.request(vault, "pause", job="tick")["changed"] is False

    # A paused job has no next run; the others keep theirs.
    views = jobs_json(vault)
    assert views["tick"]["paused"] and views["tick"]["next_run"] is None
    assert views["clock"]["next_run"] is not None

    def preview(*flags: str) -> str:
        result = run_cli("resume", "tick", "--preview", *flags, "--vault", str(vault))
        assert result.returncode == 0, result.stderr
        return result.stdout

    wait_for(lambda: "slot(s) missed while paused" in preview())
    assert "one catch-up run -> starts" in preview()
    skipping = preview("--skip-missed")
    assert "-> left out" in skipping and "-> starts" not in skipping, skipping

    resumed = control.request(vault, "resume", job="tick", missed=False)
    assert resumed["changed"] is True
    assert [run["outcome"] for run in resumed["plan"]["runs"]] == ["left out"]
    assert control.request(vault, "resume", job="tick")["changed"] is False
    assert control.request(vault, "resume")["changed"] is False  # no global pause
    wait_for(lambda: jobs_json(vault)["tick"]["next_run"] is not None)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_paused_jobs_show_no_next_run_in_the_files_view_either(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.nightly]
        command = ["true"]
        cron = "0 3 * * *"
        [jobs.hourly]
        command = ["true"]
        cron = "0 * * * *"
        """
    )
    config = load_config(vault / "watchkeeper.toml")
    save_state(vault, RuntimeState(paused=False, paused_jobs={"nightly"}))
    views = {view["name"]: view for view in jobs_view(config)}
    assert views["nightly"]["next_run"] is None and views["hourly"]["next_run"] is not None
    save_state(vault, RuntimeState(paused=True))
    assert [view["next_run"] for view in jobs_view(config)] == [None, None]


async def test_resume_preview_with_more_waiting_than_the_quota_allows(
    make_vault, tmp_path: Path
) -> None:
    vault = make_vault(
        """
        [jobs.triage]
        command = ["true"]
        every = "100ms"
        on_files = ["Inbox/*.md"]
        max_per_hour = 1
        overlap = "allow"
        """
    )
    staged = tmp_path / "note.md"
    staged.write_text("work\n")
    os.rename(staged, vault / "Inbox" / "note.md")
    save_state(vault, RuntimeState(paused_jobs={"triage"}))
    keeper = await started_keeper(vault)
    serving = asyncio.create_task(keeper.serve())
    runtime = keeper.jobs["triage"]
    await until(lambda: runtime.missed_while_paused >= 1 and keeper.handover.has_pending("triage"))

    plan = keeper.resume_plan("triage")  # a slot missed and a file: room for one run
    outcomes = [(run.kind, run.outcome) for run in plan.runs]
    assert outcomes == [
        ("missed", "starts"),
        ("files", "refused: quota triage max_per_hour reached; a slot frees in 1h00m"),
    ]
    # Without the missed run, the file takes the one slot.
    plan = keeper.resume_plan("triage", missed=False)
    assert [(run.kind, run.outcome, run.fires) for run in plan.runs] == [
        ("missed", "left out", False),
        ("files", "starts", True),
    ]
    await finish(keeper, serving)


def test_resume_preview_through_the_cli_on_a_full_quota(make_vault, daemon, tmp_path) -> None:
    vault = make_vault(
        textwrap.dedent(
            """
            [jobs.triage]
            command = ["true"]
            every = "100ms"
            on_files = ["Inbox/*.md"]
            max_per_hour = 1
            overlap = "allow"
            """
        )
    )
    save_state(vault, RuntimeState(paused_jobs={"triage"}))
    process = daemon(vault)
    staged = tmp_path / "note.md"
    staged.write_text("work\n")
    os.rename(staged, vault / "Inbox" / "note.md")

    def preview() -> str:
        result = run_cli("resume", "triage", "--preview", "--vault", str(vault))
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    wait_for(lambda: "file(s) waiting" in preview() and "missed" in preview())
    assert "refused: quota triage max_per_hour reached" in preview()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
