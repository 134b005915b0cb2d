"""The config watch's inotify reader: a folder's own entries as they change, a stop seen
at once, an end when the folder goes. Real folders, real inotify events."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from watchkeeper.core.dirwatch import ADDED, DELETED, folder_changes

DEADLINE = 10.0


async def collect(folder: Path, stop: asyncio.Event, into: list[set[tuple[int, str]]]) -> None:
    async for changes in folder_changes([folder], stop, quiet=0.05, most=0.2):
        into.append(changes)


async def until(condition, deadline: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


def seen(batches: list[set[tuple[int, str]]]) -> set[tuple[int, str]]:
    return set().union(*batches) if batches else set()


async def watching(folder: Path, batches: list[set[tuple[int, str]]]) -> None:
    """Once a probe file's change came through, the watch is in place."""
    probe = folder / ".probe"
    end = time.monotonic() + DEADLINE
    while not any(path == str(probe) for _, path in seen(batches)):
        assert time.monotonic() < end, "the watch never saw its probe"
        probe.write_text("probe\n")
        await asyncio.sleep(0.02)
    probe.unlink()
    batches.clear()


async def test_entries_made_changed_and_removed_come_in_batches(tmp_path: Path) -> None:
    stop = asyncio.Event()
    batches: list[set[tuple[int, str]]] = []
    task = asyncio.create_task(collect(tmp_path, stop, batches))
    await watching(tmp_path, batches)
    config = tmp_path / "watchkeeper.toml"
    config.write_text("a = 1\n")
    (tmp_path / "Inbox").mkdir()
    (tmp_path / "Inbox" / "below.md").write_text("not an entry of the folder\n")
    await until(lambda: (ADDED, str(tmp_path / "Inbox")) in seen(batches))
    assert (ADDED, str(config)) in seen(batches)
    assert not any("below.md" in path for _, path in seen(batches))
    staged = tmp_path.parent / f"{tmp_path.name}-staged"
    staged.write_text("b = 2\n")
    os.replace(staged, config)  # as editors save
    await until(lambda: sum(str(config) == path for batch in batches for _, path in batch) >= 2)
    config.unlink()
    await until(lambda: (DELETED, str(config)) in seen(batches))
    stop.set()
    await asyncio.wait_for(task, DEADLINE)


async def test_a_stop_ends_it_while_nothing_changes(tmp_path: Path) -> None:
    stop = asyncio.Event()
    batches: list[set[tuple[int, str]]] = []
    task = asyncio.create_task(collect(tmp_path, stop, batches))
    await watching(tmp_path, batches)
    stop.set()
    await asyncio.wait_for(task, DEADLINE)
    assert task.result() is None


async def test_it_ends_when_the_folder_goes(tmp_path: Path) -> None:
    folder = tmp_path / "vault"
    folder.mkdir()
    batches: list[set[tuple[int, str]]] = []
    task = asyncio.create_task(collect(folder, asyncio.Event(), batches))
    await watching(folder, batches)
    folder.rmdir()
    await asyncio.wait_for(task, DEADLINE)


async def test_a_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    try:
        await collect(missing, asyncio.Event(), [])
    except FileNotFoundError as error:
        assert error.filename == str(missing)
    else:
        raise AssertionError("no error for a missing folder")


async def test_a_folder_that_goes_is_reported_and_the_others_still_watched(tmp_path: Path) -> None:
    inbox, done = tmp_path / "Inbox", tmp_path / "Done"
    inbox.mkdir()
    done.mkdir()
    stop = asyncio.Event()
    batches: list[set[tuple[int, str]]] = []
    task = asyncio.create_task(
        anext_all(folder_changes([inbox, done], stop, quiet=0.05, most=0.2), batches)
    )
    await watching(inbox, batches)
    inbox.rmdir()
    await until(lambda: (DELETED, str(inbox)) in seen(batches))
    (done / "a.md").write_text("a\n")
    await until(lambda: (ADDED, str(done / "a.md")) in seen(batches))
    stop.set()
    await asyncio.wait_for(task, DEADLINE)


async def test_given_no_folder_it_waits_for_its_stop(tmp_path: Path) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(collect_all([], stop))
    await asyncio.sleep(0)
    assert not task.done()
    stop.set()
    assert await asyncio.wait_for(task, DEADLINE) == []


async def anext_all(changes, into: list[set[tuple[int, str]]]) -> None:  # type: ignore[no-untyped-def]
    async for batch in changes:
        into.append(batch)


async def collect_all(folders: list[Path], stop: asyncio.Event) -> list[set[tuple[int, str]]]:
    batches: list[set[tuple[int, str]]] = []
    await anext_all(folder_changes(folders, stop), batches)
    return batches
