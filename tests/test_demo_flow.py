"""The demo vault flows by itself: a real keeper on a fresh `watchkeeper init` vault
drops a sample note into Inbox, moves it to Needs_Action and plans it into Plans, with
nobody touching anything; each step is in the keeper log, the job logs and history."""

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


def test_a_sample_note_flows_inbox_needs_action_plans_by_itself(tmp_path: Path, daemon) -> None:
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
    wait_for(lambda: (vault / "Plans" / f"{stem}.plan.md").exists(), timeout=30)
    assert (vault / "Needs_Action" / name).exists()
    assert not (vault / "Inbox" / name).exists()
    plan = (vault / "Plans" / f"{stem}.plan.md").read_text()
    assert plan.startswith("# Plan: ") and "- [ ] " in plan

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

    # The Log pane's sources: the keeper log and each job's output.
    log = keeper_log(vault)
    assert "of vault-watcher started (file" in log
    assert "of task-planner started (after" in log
    assert f"moved {name} -> Needs_Action/" in job_log(vault, "vault-watcher")
    assert f"planned {name} -> Plans/{stem}.plan.md" in job_log(vault, "task-planner")


def test_sample_notes_finishes_old_samples_stops_at_three_and_spares_yours(
    tmp_path: Path,
) -> None:
    vault = tmp_path / "vault"
    assert run_cli("init", str(vault)).returncode == 0
    env = {**os.environ, "WATCHKEEPER_VAULT": str(vault), "DEMO_PACE": "0"}

    def demo(script: str) -> None:
        path = vault / "scripts" / script
        subprocess.run([sys.executable, str(path)], env=env, check=True, capture_output=True)

    mine = vault / "Plans" / "mine.plan.md"
    mine.write_text("# Plan: mine\n\n- [ ] keep me\n")
    (vault / "Needs_Action" / "sample-old.md").write_text("# old\n")
    old = vault / "Plans" / "sample-old.plan.md"
    old.write_text("# Plan: old\n\n- [ ] a\n- [ ] b\n")
    for plan in (mine, old):
        os.utime(plan, (0, 0))  # planned long ago
    for _ in range(4):
        demo("sample_notes.py")
    assert old.read_text() == "# Plan: old\n\n- [x] a\n- [x] b\n"
    assert mine.read_text() == "# Plan: mine\n\n- [ ] keep me\n"
    # sample-old waits in Needs_Action: two more make three open, and no more come.
    dropped = sorted(path.name for path in (vault / "Inbox").glob("sample-*.md"))
    assert len(dropped) == 2 and len(set(dropped)) == 2
    demo("archive.py")
    assert sorted(path.name for path in (vault / "Done").iterdir()) == [
        "sample-old.md",
        "sample-old.plan.md",
    ]
    demo("sample_notes.py")
    assert len(list((vault / "Inbox").glob("sample-*.md"))) == 3
