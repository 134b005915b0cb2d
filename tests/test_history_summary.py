"""The history's summary (what `--status` reads instead of a day of history) and the quota's
start reader: each against the whole history folded by hand, as it grows, is torn,
rewritten or replaced, and where the summary cannot be saved."""

from __future__ import annotations

import json
import os
import random
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from watchkeeper.core.config import load_config
from watchkeeper.core.history import RunRecord, runs_since, starts_since
from watchkeeper.core.history_format import segment_path
from watchkeeper.core.history_summary import SUMMARY_NAME
from watchkeeper.core.quota import started
from watchkeeper.core.status import last_runs
from watchkeeper.core.vault import ensure_layout

JOBS = ["tick", "tock", "rare", "never"]
FAILED = ("failure", "timeout", "interrupted")


def vault_in(tmp_path: Path, zone: str) -> Path:
    vault = tmp_path / "vault"
    ensure_layout(vault)
    config = f'[keeper]\ntimezone = "{zone}"\n' + "".join(
        f'[jobs.{job}]\ncommand = ["true"]\nevery = "1h"\n' for job in JOBS
    )
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(config))
    return vault


def random_runs(rng: random.Random, now: datetime, count: int) -> list[tuple[datetime, bytes]]:
    """(write time, line) of `count` runs over the last three days: a running line, then
    (mostly) a final one, some runs ending hours after they started, some still running."""
    lines = []
    for n in range(count):
        job = rng.choice(JOBS[:2] * 8 + JOBS[2:3])
        started = now - timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        record = RunRecord(
            id=f"{n:06d}-{rng.getrandbits(24):06x}",
            job=job,
            project="p",
            started_at=started,
            status="running",
            trigger="schedule",
            host="h",
        )
        lines.append((started, record.to_line()))
        took = timedelta(minutes=rng.choice([0.01, 1, 30, 300]))
        if started + took > now:
            continue  # still running
        record.completed_at = started + took
        record.status = rng.choice(
            ["success"] * 6 + ["failure", "timeout", "skipped", "cancelled", "interrupted"]
        )
        record.duration_ms = int(took.total_seconds() * 1000)
        record.exit_code = 1 if record.status == "failure" else None
        lines.append((record.completed_at, record.to_line()))
    return sorted(lines, key=lambda item: item[0])


def write(directory: Path, lines: list[tuple[datetime, bytes]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for written, line in lines:
        with segment_path(directory, written.astimezone(UTC).date()).open("ab") as out:
            out.write(line)


def by_hand(directory: Path, now: datetime) -> tuple[dict[str, str], dict[str, int]]:
    """Each job's newest finished run in the last day (else week) and today's counts, from
    every line, folded by run id."""
    runs: dict[str, dict] = {}
    for segment in sorted(directory.glob("*.jsonl")):
        for raw in segment.read_text().splitlines():
            try:
                with_id = json.loads(raw)
            except ValueError:
                continue  # a line being written, or cut off
            runs[with_id["id"]] = with_id
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    window = min(midnight, now - timedelta(days=1))
    finished = [run for run in runs.values() if run["status"] != "running"]
    today = {"ok": 0, "failed": 0}
    for run in finished:
        if datetime.fromisoformat(run["startedAt"]) >= midnight:
            if run["status"] == "success":
                today["ok"] += 1
            elif run["status"] in FAILED:
                today["failed"] += 1
    last = {}
    for job in JOBS:
        for since in (window, now - timedelta(days=7)):
            mine = [
                run
                for run in finished
                if run["taskId"] == job and datetime.fromisoformat(run["startedAt"]) >= since
            ]
            if mine:
                last[job] = max(mine, key=lambda run: (run["startedAt"], run["id"]))["id"]
                break
    return last, today


def summarised(vault: Path) -> tuple[dict[str, str], dict[str, int], int]:
    last, today, bad = last_runs(load_config(vault / "watchkeeper.toml"))
    return {job: record.id for job, record in last.items()}, today, bad


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kathmandu"])
def test_today_and_the_newest_runs_match_the_whole_history_as_it_grows(
    tmp_path: Path, zone: str
) -> None:
    vault = vault_in(tmp_path, zone)
    directory = vault / "Logs" / "history"
    now = datetime.now(ZoneInfo(zone))
    lines = random_runs(random.Random(zone), now, 3000)
    write(directory, lines[:2000])
    assert summarised(vault)[:2] == by_hand(directory, now)
    saved = json.loads((directory / SUMMARY_NAME).read_text())
    sizes = {day: entry["size"] for day, entry in saved["segments"].items()}
    assert sizes == {p.stem: p.stat().st_size for p in directory.glob("*.jsonl")}
    # Later lines are read from where the summary stopped.
    write(directory, lines[2000:])
    assert summarised(vault) == (*by_hand(directory, now), 0)
    assert summarised(vault) == (*by_hand(directory, now), 0)  # from the summary alone


def manual_success(run_id: str, job: str, now: datetime) -> bytes:
    return RunRecord(
        id=run_id,
        job=job,
        project="p",
        started_at=now,
        status="success",
        trigger="manual",
        host="h",
        completed_at=now,
        duration_ms=0,
    ).to_line()


def test_a_rewritten_replaced_or_torn_segment_is_read_again(tmp_path: Path) -> None:
    vault = vault_in(tmp_path, "UTC")
    directory = vault / "Logs" / "history"
    now = datetime.now(UTC)
    # Runs spread over three days leave today's segment, the one tested here, empty in the
    # first minutes after midnight (a CI run at 00:04 UTC had none): one run is today's.
    first = manual_success("today", "tick", now)
    write(directory, [*random_runs(random.Random(1), now, 400), (now, first)])
    summarised(vault)
    today = segment_path(directory, now.date())
    # Rewritten in place, same size and inode: every success made a failure.
    data = today.read_bytes()
    with today.open("r+b") as out:
        out.write(data.replace(b'"status":"success"', b'"status":"failure"'))
    assert summarised(vault)[:2] == by_hand(directory, now)
    # Replaced by a shorter file (another inode).
    kept = b"".join(today.read_bytes().splitlines(keepends=True)[:50])
    replacement = today.with_name("new")
    replacement.write_bytes(kept)
    os.replace(replacement, today)
    assert summarised(vault)[:2] == by_hand(directory, now)
    # A line being written: counted as unreadable, and read once it is whole.
    final = manual_success("late", "tock", now)
    with today.open("ab") as out:
        out.write(final[:40])
    last, counts, bad = summarised(vault)
    assert (last, counts) == by_hand(directory, now) and bad == 1
    with today.open("ab") as out:
        out.write(final[40:])
    assert summarised(vault) == (*by_hand(directory, now), 0)
    assert summarised(vault)[0]["tock"] == "late"


def test_without_a_place_to_save_it_the_summary_is_worked_out_each_time(
    tmp_path: Path,
) -> None:
    vault = vault_in(tmp_path, "UTC")
    directory = vault / "Logs" / "history"
    now = datetime.now(UTC)
    write(directory, random_runs(random.Random(2), now, 300))
    (directory / SUMMARY_NAME).mkdir()  # where the file would go: writing it fails
    assert summarised(vault) == (*by_hand(directory, now), 0)
    write(directory, random_runs(random.Random(3), now, 300))
    assert summarised(vault) == (*by_hand(directory, now), 0)


def test_a_summary_from_another_version_or_garbled_is_made_afresh(tmp_path: Path) -> None:
    vault = vault_in(tmp_path, "UTC")
    directory = vault / "Logs" / "history"
    now = datetime.now(UTC)
    write(directory, random_runs(random.Random(4), now, 300))
    for text in ('{"version": 0, "segments": {}}', "{not json", '{"version": 1, "segments": 3}'):
        (directory / SUMMARY_NAME).write_text(text)
        assert summarised(vault) == (*by_hand(directory, now), 0)


def test_quota_starts_are_the_starts_full_records_give(tmp_path: Path) -> None:
    directory = tmp_path / "history"
    now = datetime.now(UTC)
    write(directory, random_runs(random.Random(5), now, 2000))
    since = now - timedelta(hours=1)
    records = [record for record in runs_since(directory, since).records if started(record)]
    starts = [start for start in starts_since(directory, since) if started(start)]
    expected = sorted((record.job, record.started_at.timestamp()) for record in records)
    assert sorted((start.job, start.at) for start in starts) == expected
    assert any(start.status == "cancelled" for start in starts_since(directory, since))
