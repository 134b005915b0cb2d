"""What the keeper learns of past runs as it starts comes through its Store, never from
the vault's files behind the Store's back: a second store (PostgreSQL in a cluster)
answers these reads too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import finish

from watchkeeper.core.config import load_config
from watchkeeper.core.history import HistoryWriter, RunRecord, utc_now
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire
from watchkeeper.core.store import JsonlStore

CONFIG = """
[jobs.ok]
command = ["true"]
[jobs.old]
command = ["true"]
"""


def write_final(vault: Path, run_id: str, job: str, status: str) -> RunRecord:
    completed = utc_now()
    record = RunRecord(
        id=run_id,
        job=job,
        project=vault.name,
        started_at=completed - timedelta(seconds=1),
        status=status,
        trigger="schedule",
        host="before",
        completed_at=completed,
        duration_ms=1000,
        error="exit code 9" if status == "failure" else None,
    )
    writer = HistoryWriter(vault / "Logs" / "history")
    writer.append(record)
    writer.close()
    return record


async def test_the_start_reads_recent_runs_through_the_store(make_vault) -> None:
    vault = make_vault(CONFIG)
    elsewhere = make_vault(CONFIG, name="elsewhere")  # where this keeper's store keeps runs
    earlier = write_final(elsewhere, "earlier", "old", "failure")
    write_final(vault, "decoy", "ok", "success")  # the vault's own files, not its store's
    config = load_config(vault / "watchkeeper.toml")
    keeper = Keeper(config, acquire(vault), store=JsonlStore(elsewhere))
    await keeper.start(catch_up=False, files=False)
    last = keeper.jobs["old"].last
    assert last is not None and last.id == "earlier"
    assert keeper.jobs["ok"].last is None
    assert earlier.completed_at is not None
    # Counted unless midnight passed in the second since it was written.
    ended_today = (
        earlier.completed_at.astimezone(keeper.tz).date() == utc_now().astimezone(keeper.tz).date()
    )
    assert keeper.snapshot()["today"] == {"ok": 0, "failed": int(ended_today)}
    await finish(keeper)  # writes Dashboard.md a last time
    markdown = (vault / "Dashboard.md").read_text()
    runs = markdown.split("\n## Last 10 runs\n", 1)[1].split("\n## ", 1)[0]
    failures = markdown.split("\n## Failures, last 24 h\n", 1)[1].split("\n## ", 1)[0]
    assert "| old | ✘ failure |" in runs and "| ok |" not in runs
    assert "| old |" in failures
