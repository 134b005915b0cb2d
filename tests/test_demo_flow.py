"""The demo vault flows by itself: a real keeper on a fresh `watchkeeper init` vault
drops a sample note into Inbox, moves it to Needs_Action and writes its plan, which waits
there until approved; approving it (`watchkeeper approve`) hands it to plan-worker. Each
step is in the keeper log, the job logs and history."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import final_records, keeper_log, run_cli, wait_for

from watchkeeper.core.config import load_config

# The demo's jobs take DEMO_PACE seconds when they have work, so they show RUNNING.
SEEN_RUNNING_MS = 1000


def job_log(vault: Path, job: str) -> str:
    path = vault / "Logs" / "jobs" / f"{job}.log"
    return path.read_text() if path.exists() else ""


def test_the_shipped_demo_drops_a_note_within_a_minute(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    config = load_config(vault / "watchkeeper.toml")
    dropper = config.jobs["sample-notes"]
    assert dropper.enabled and dropper.every is not None and dropper.every <= 30
    # Inbox notes are handed to the watcher as they arrive; the planner follows it.
    assert config.jobs["vault-watcher"].on_files == ("Inbox/*.md",)
    assert config.jobs["task-planner"].after == ("vault-watcher",)


def test_a_sample_note_flows_and_its_plan_waits_for_approval(tmp_path: Path, daemon) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    config = vault / "watchkeeper.toml"
    # The shipped 20s, made shorter so the test need not wait for the first drop.
    text = config.read_text()
    shipped = 'every = "20s"\noverlap = "skip"'
    assert text.count(shipped) == 1
    config.write_text(text.replace(shipped, 'every = "2s"\noverlap = "skip"'))
    daemon(vault)

    def drop() -> re.Match[str] | None:
        return re.search(r"dropped (sample-\S+\.md) into Inbox", job_log(vault, "sample-notes"))

    wait_for(drop, timeout=30)
    dropped = drop()
    assert dropped is not None
    name = dropped.group(1)
    stem = name.removesuffix(".md")
    waiting = vault / "Needs_Action" / f"{stem}.plan.md"
    wait_for(waiting.exists, timeout=30)
    assert (vault / "Needs_Action" / name).exists()
    assert not (vault / "Inbox" / name).exists()
    plan = waiting.read_text()
    assert plan.startswith("# Plan: ") and "- [ ] " in plan
    assert not (vault / "Plans" / f"{stem}.plan.md").exists()  # not before it is approved

    # History: the watcher was handed the note, and took long enough to be seen running.
    def handed() -> dict | None:
        return next(
            (
                record
                for record in final_records(vault).values()
                if record["taskId"] == "vault-watcher"
                and record["files"] == [f"Inbox/{name}"]
                and record["status"] == "success"
            ),
            None,
        )

    record = wait_for(handed)
    assert record["trigger"] == "file"  # type: ignore[index]
    assert record["duration"] >= SEEN_RUNNING_MS  # type: ignore[index]
    planners = [
        r["status"]
        for r in final_records(vault).values()
        if r["taskId"] == "task-planner" and r["status"] != "running"
    ]
    assert "success" in planners and set(planners) == {"success"}

    # Approving the plan moves it to Plans/, which hands it to plan-worker.
    approved = run_cli("approve", "--vault", str(vault), f"Needs_Action/{stem}.plan.md")
    assert approved.returncode == 0, approved.stderr
    assert "through keeper pid" in approved.stdout

    def worked() -> dict | None:
        return next(
            (
                r
                for r in final_records(vault).values()
                if r["taskId"] == "plan-worker"
                and r["files"] == [f"Plans/{stem}.plan.md"]
                and r["status"] != "running"
            ),
            None,
        )

    work = wait_for(worked, timeout=30)
    assert work["trigger"] == "file" and work["status"] == "success"  # type: ignore[index]
    ticked = (vault / "Plans" / f"{stem}.plan.md").read_text()
    assert "- [x] " in ticked and "- [ ] " not in ticked

    # The Log pane's sources: the keeper log and each job's output.
    log = keeper_log(vault)
    assert "of vault-watcher started (file" in log
    assert "of task-planner started (after" in log
    assert f"approved Needs_Action/{stem}.plan.md -> Plans/{stem}.plan.md" in log
    assert f"moved {name} -> Needs_Action/" in job_log(vault, "vault-watcher")
    planned = f"planned {name} -> Needs_Action/{stem}.plan.md (waits for approval)"
    assert planned in job_log(vault, "task-planner")
    assert f"worked through {stem}.plan.md" in job_log(vault, "plan-worker")


def test_sample_notes_approves_old_samples_stops_at_three_and_spares_yours(
    tmp_path: Path,
) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    env = {**os.environ, "WATCHKEEPER_VAULT": str(vault), "DEMO_PACE": "0"}

    def demo(script: str) -> None:
        path = vault / "scripts" / script
        subprocess.run([sys.executable, str(path)], env=env, check=True, capture_output=True)

    mine = vault / "Needs_Action" / "mine.plan.md"
    mine.write_text("# Plan: mine\n\nSource: Needs_Action/mine.md\n- [ ] keep me\n")
    (vault / "Needs_Action" / "sample-old.md").write_text("# old\n")
    old = vault / "Needs_Action" / "sample-old.plan.md"
    old.write_text("# Plan: old\n\nSource: Needs_Action/sample-old.md\n- [ ] a\n- [ ] b\n")
    for plan in (mine, old):
        os.utime(plan, (0, 0))  # planned long ago
    for _ in range(4):
        demo("sample_notes.py")
    # The sample's plan is approved (moved to Plans/, unworked); yours waits for you.
    approved = vault / "Plans" / "sample-old.plan.md"
    assert not old.exists() and "- [ ] a\n- [ ] b\n" in approved.read_text()
    assert mine.read_text() == "# Plan: mine\n\nSource: Needs_Action/mine.md\n- [ ] keep me\n"
    # sample-old waits in Needs_Action (its plan does not count): two more make three
    # open, and no more come.
    dropped = sorted(path.name for path in (vault / "Inbox").glob("sample-*.md"))
    assert len(dropped) == 2 and len(set(dropped)) == 2
    demo("plan_worker.py")  # on schedule: sweeps Plans/ for approved plans not worked
    assert "- [x] a\n- [x] b\n" in approved.read_text()
    demo("archive.py")
    assert sorted(path.name for path in (vault / "Done").iterdir()) == [
        "sample-old.md",
        "sample-old.plan.md",
    ]
    demo("sample_notes.py")
    assert len(list((vault / "Inbox").glob("sample-*.md"))) == 3
