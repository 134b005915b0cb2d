"""A keeper whose history or ledger cannot be written keeps scheduling, keeps the lines,
and writes them, in order, once the disk takes them again: nothing is lost while it lives.

The history's failure is a real ENOSPC: the day's segment is a symlink to /dev/full,
which refuses every write as a full disk does. The ledger's is a directory in its place.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from conftest import final_records, keeper_log
from test_files import drop, file_job, handed, serving
from test_keeper import finish, started_keeper, until


def segment_names() -> list[str]:
    today = datetime.now(UTC).date()
    return [f"{day.isoformat()}.jsonl" for day in (today, today + timedelta(days=1))]


def history_lines(vault: Path) -> list[dict]:
    """Every line of the regular segments, in file order."""
    lines = []
    for segment in sorted((vault / "Logs" / "history").glob("*.jsonl")):
        if segment.is_file() and not segment.is_symlink():
            lines += [json.loads(line) for line in segment.read_bytes().splitlines()]
    return lines


async def hand_one_by_one(vault: Path, out: Path, names: list[str], staging: Path) -> None:
    for count, name in enumerate(names, 1):
        drop(vault / "Inbox", [name], staging)
        await until(partial(handed_so_many, out, count))


def handed_so_many(out: Path, count: int) -> bool:
    return len(handed(out)) == count


async def test_history_a_full_disk_refused_is_written_late_and_in_order(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("eat", out, extra='settle = "100ms"'))
    history = vault / "Logs" / "history"
    history.mkdir(parents=True, exist_ok=True)
    for name in segment_names():  # today's, and tomorrow's should the test cross midnight
        (history / name).symlink_to("/dev/full")
    keeper = await started_keeper(vault)
    task = await serving(keeper)

    await hand_one_by_one(vault, out, ["a.md", "b.md", "c.md"], tmp_path / "staging")
    assert await keeper.wait_idle(10)
    assert history_lines(vault) == [] and keeper.history.backlog == 6
    await until(lambda: "cannot write history: No space left on device" in keeper_log(vault))

    for name in segment_names():
        (history / name).unlink()  # room again
    # Nothing else happens from here: only the retry timer can put the lines on disk.
    await until(lambda: len(history_lines(vault)) == 6, timeout=10)
    await until(lambda: "wrote 6 history line(s) late after: No space left" in keeper_log(vault))
    await finish(keeper, task)

    lines = history_lines(vault)
    runs = list(dict.fromkeys(line["id"] for line in lines))
    assert [(line["id"], line["status"]) for line in lines] == [
        (run, status) for run in runs for status in ("running", "success")
    ]
    assert [line["files"] for line in lines[1::2]] == [
        ["Inbox/a.md"],
        ["Inbox/b.md"],
        ["Inbox/c.md"],
    ]


async def test_ledger_lines_held_back_are_written_late_and_a_restart_hands_nothing_again(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("eat", out, extra='settle = "100ms"'))
    ledger = vault / "Logs" / "files.jsonl"
    staging = tmp_path / "staging"
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    await hand_one_by_one(vault, out, ["a.md"], staging)
    await until(lambda: ledger.exists() and b"success" in ledger.read_bytes())
    saved = ledger.read_bytes()
    ledger.unlink()
    ledger.mkdir()  # the ledger cannot be written

    drop(vault / "Inbox", ["b.md", "c.md"], staging)
    await until(lambda: sorted(handed(out)) == ["Inbox/a.md", "Inbox/b.md", "Inbox/c.md"])
    assert await keeper.wait_idle(10)
    await until(lambda: "cannot write file ledger: Is a directory" in keeper_log(vault))
    assert keeper.ledger.out.backlog > 0

    ledger.rmdir()
    ledger.write_bytes(saved)
    await until(lambda: "file ledger line(s) late after: Is a directory" in keeper_log(vault))
    await finish(keeper, task)
    outcomes = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    assert {
        (entry["path"], entry["outcome"]) for entry in outcomes if entry["outcome"] == "success"
    } == {
        ("Inbox/a.md", "success"),
        ("Inbox/b.md", "success"),
        ("Inbox/c.md", "success"),
    }

    # The next keeper knows every file was done: none is handed again.
    keeper = await started_keeper(vault)
    task = asyncio.create_task(keeper.serve())
    assert await keeper.wait_idle(10)
    await asyncio.sleep(0.5)  # room for a wrong hand-over to start
    assert await keeper.wait_idle(10)
    await finish(keeper, task)
    assert sorted(handed(out)) == ["Inbox/a.md", "Inbox/b.md", "Inbox/c.md"]
    assert all(record["status"] != "running" for record in final_records(vault).values())
