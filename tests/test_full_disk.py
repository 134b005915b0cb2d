"""A keeper whose history or ledger cannot be written keeps scheduling, keeps the lines,
and writes them, in order, once the disk takes them again: nothing is lost while it lives.

The history's failure is a real ENOSPC: the day's segment is a symlink to /dev/full,
which refuses every write as a full disk does. The ledger's is a directory in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from conftest import final_records, finish, keeper_log, started_keeper, until, wait_for
from test_files import drop, file_job, handed, serving

from watchkeeper.core.history import HistoryWriter
from watchkeeper.core.vault import ensure_layout


def segment_names() -> list[str]:
    today = datetime.now(UTC).date()
    return [f"{day.isoformat()}.jsonl" for day in (today, today + timedelta(days=1))]


def history_lines(vault: Path, torn: list[bytes] | None = None) -> list[dict]:
    """Every whole line of the regular segments, in file order; the last one, while the
    disk has cut it short, is not whole yet. Lines that do not parse go to `torn`, or
    fail the test when none is given."""
    lines = []
    for segment in sorted((vault / "Logs" / "history").glob("*.jsonl")):
        if segment.is_file() and not segment.is_symlink():
            for line in segment.read_bytes().splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    continue
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    if torn is None:
                        raise
                    torn.append(line)
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
    assert isinstance(keeper.history, HistoryWriter)  # the JSONL store's
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


# ---- a real full filesystem under Logs/ (a small tmpfs; needs mount, so root) ----------

TICK = """
[keeper]
catch_up = "none"

[jobs.tick]
command = ["sh", "-c", "echo \\"$WATCHKEEPER_RUN_ID\\" >> \\"$WATCHKEEPER_VAULT/ticks.txt\\""]
every = "200ms"
"""


@pytest.fixture
def small_logs(make_vault) -> Iterator[Path]:
    """A vault whose Logs/ is a 1 MiB tmpfs of its own."""
    vault = make_vault(TICK)
    logs = vault / "Logs"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(logs)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        ensure_layout(vault)
        yield vault
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=False)


def fill(folder: Path) -> Path:
    """Take every free block, as a runaway log elsewhere would."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 512)
    return filler


def ticks(vault: Path) -> list[str]:
    path = vault / "ticks.txt"
    return path.read_text().split() if path.exists() else []


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    process.wait(timeout=30)


def test_a_daemon_on_a_full_logs_filesystem_writes_every_record_once_there_is_room(
    small_logs: Path, daemon
) -> None:
    vault = small_logs
    process = daemon(vault)
    try:
        wait_for(lambda: len(ticks(vault)) >= 2)
        filler = fill(vault / "Logs")
        full_since = len(ticks(vault))
        # The file ends hold a little slack: wait until runs clearly go unrecorded.
        wait_for(
            lambda: (
                len(set(ticks(vault)[full_since:]) - {line["id"] for line in history_lines(vault)})
                >= 5
            ),
            timeout=30,
        )
        filler.unlink()
        wait_for(
            lambda: "history line(s) late after: No space left" in keeper_log(vault), timeout=15
        )
        ran = ticks(vault)
        wait_for(
            lambda: (
                {line["id"] for line in history_lines(vault) if line["status"] == "success"}
                >= set(ran)
            )
        )
    finally:
        stop(process)
    lines = history_lines(vault)
    assert {line["id"] for line in lines} >= set(ran)
    for run in {line["id"] for line in lines}:
        statuses = [line["status"] for line in lines if line["id"] == run]
        # A tick that outlasts its 200 ms on a busy box makes the next one a skipped record.
        assert statuses in (["running", "success"], ["skipped"]), (run, statuses)


def test_after_a_kill_on_a_full_disk_the_restart_closes_every_run(
    small_logs: Path, daemons
) -> None:
    vault = small_logs
    process = daemons.start(vault)
    wait_for(lambda: len(ticks(vault)) >= 2)
    filler = fill(vault / "Logs")
    full_since = len(ticks(vault))
    wait_for(lambda: len(ticks(vault)) >= full_since + 5, timeout=30)
    stop(process, signal.SIGKILL)  # the lines still in memory die with it
    filler.unlink()

    process = daemons.start(vault)
    restarted_at = len(ticks(vault))  # what the dead keeper's runs did is behind this
    wait_for(lambda: len(ticks(vault)) >= restarted_at + 5, timeout=30)
    stop(process)
    torn: list[bytes] = []
    lines = history_lines(vault, torn)
    assert len(torn) <= 1  # at most the line the kill cut short, skipped as readers do
    folded = {line["id"]: line for line in lines}
    assert [run for run, line in folded.items() if line["status"] == "running"] == []
    assert {line["status"] for line in folded.values()} <= {"success", "interrupted", "skipped"}
    finals = [line["id"] for line in lines if line["status"] != "running"]
    assert len(finals) == len(set(finals))  # never two final lines for one run
    assert set(ticks(vault)[restarted_at:]) <= set(folded)  # after the restart: all recorded
