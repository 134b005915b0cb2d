"""Reading a rotated log's end backwards and following it across rotation, on real files."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from watchkeeper.core.logs import RotatingFile
from watchkeeper.core.tail import MAX_LINE, follow, last_lines


def write(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def test_last_lines_spans_the_live_file_and_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "keeper.log"
    log = RotatingFile(path, max_size=60, backups=3)
    for index in range(20):
        log.write(f"line {index:02d}\n".encode())  # 8 bytes: 7 lines a file
    log.close()
    assert (tmp_path / "keeper.log.2").exists()
    assert last_lines(path, 3) == ["line 17", "line 18", "line 19"]
    assert last_lines(path, 10) == [f"line {index:02d}" for index in range(10, 20)]
    # More than all files hold: everything there is, oldest first.
    assert last_lines(path, 100) == [f"line {index:02d}" for index in range(20)]


def test_last_lines_edges(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    assert last_lines(path, 5) == []
    path.write_bytes(b"")
    assert last_lines(path, 5) == []
    path.write_bytes(b"one\n\nthree\nunended")
    assert last_lines(path, 2) == ["three", "unended"]
    assert last_lines(path, 10) == ["one", "", "three", "unended"]
    assert last_lines(path, 0) == []
    path.write_bytes("é\n".encode() + b"\xff\n")
    assert last_lines(path, 2) == ["é", "\ufffd"]


def test_last_lines_takes_the_rest_from_backup_when_live_file_is_missing(tmp_path: Path) -> None:
    # Between a rotation's rename and the new file's creation only .1 exists.
    write(tmp_path / "a.log.1", "old 1", "old 2")
    assert last_lines(tmp_path / "a.log", 5) == ["old 1", "old 2"]


def test_last_lines_across_block_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    expected = [f"{index:06d} " + "x" * (index % 300) for index in range(5000)]
    write(path, *expected)
    assert path.stat().st_size > 4 * 64 * 1024
    for count in (1, 7, 333, 4999, 5000):
        assert last_lines(path, count) == expected[-count:]


def test_last_lines_on_a_huge_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    with path.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: no newline in 200 MB of zeros
    write(path, "", *(f"tail line {index}" for index in range(100)))
    write(tmp_path / "huge.log.1", "from the backup")
    assert last_lines(path, 10) == [f"tail line {index}" for index in range(90, 100)]
    # Asking for more lines than end the file runs into the junk: the scan gives up
    # after MAX_LINE bytes without a newline instead of reading 200 MB to return them
    # as one "line", or mixing in the backup, which is older than that unread part.
    assert path.stat().st_size > 2 * MAX_LINE
    assert last_lines(path, 150) == [f"tail line {index}" for index in range(100)]


# ---- follow ---------------------------------------------------------------------------


@pytest.fixture
def follower() -> Iterator[Callable[..., list[str]]]:
    """Runs `follow` in a thread; returns the list it fills. Stopped (and checked) at the end.

    The thread opens the file some time after start: a test that writes must first see a
    backlog line, which proves the follower is reading from the file's end at that time.
    """
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(path: Path, backlog: int = 0) -> list[str]:
        seen: list[str] = []
        stop = threading.Event()

        def consume() -> None:
            for line in follow(path, stop.is_set, poll=0.01, backlog=backlog):
                seen.append(line)

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        stops.append((stop, thread))
        return seen

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "follow did not stop when asked"


def test_follow_prints_backlog_then_new_lines_joining_partial_writes(
    tmp_path: Path, follower
) -> None:
    path = tmp_path / "job.log"
    write(path.with_name("job.log.1"), "older")
    write(path, "first", "second")
    seen = follower(path, backlog=3)
    wait_for(lambda: len(seen) == 3)
    assert seen == ["older", "first", "second"]
    with path.open("a") as handle:
        handle.write("par")
        handle.flush()
        handle.write("tial\nnext\n")
    wait_for(lambda: len(seen) == 5)
    assert seen[3:] == ["partial", "next"]


def test_follow_survives_rotation_reading_the_old_file_to_its_end(tmp_path: Path, follower) -> None:
    path = tmp_path / "keeper.log"
    write(path, "ready")
    seen = follower(path, backlog=1)
    wait_for(lambda: seen == ["ready"])
    seen.clear()
    writer = path.open("a", encoding="utf-8")
    writer.write("a1\n")
    writer.flush()
    wait_for(lambda: seen == ["a1"])
    os.rename(path, path.with_name("keeper.log.1"))
    # The writer still holds the renamed file: what it writes there must not be lost.
    writer.write("a2\nunended")
    writer.close()
    write(path, "b1", "b2")
    wait_for(lambda: len(seen) == 5)
    assert seen == ["a1", "a2", "unended", "b1", "b2"]
    # And the follower now reads the new file.
    write(path, "b3")
    wait_for(lambda: len(seen) == 6)
    assert seen[-1] == "b3"


def test_follow_survives_rotation_by_the_real_writer(tmp_path: Path, follower) -> None:
    path = tmp_path / "job.log"
    log = RotatingFile(path, max_size=40, backups=2)
    log.write(b"ready\n")
    seen = follower(path, backlog=1)
    wait_for(lambda: seen == ["ready"])
    seen.clear()
    expected = [f"line {index:02d}" for index in range(12)]  # 8 bytes each: many rotations

    def caught_up(count: int) -> Callable[[], bool]:
        return lambda: len(seen) == count

    for count, line in enumerate(expected, start=1):
        log.write(f"{line}\n".encode())
        # One write at a time, each seen before the next: rotations never pile up
        # faster than a poll (which `tail -F` cannot survive either).
        wait_for(caught_up(count))
    log.close()
    assert seen == expected


def test_follow_rereads_a_file_truncated_in_place(tmp_path: Path, follower) -> None:
    path = tmp_path / "a.log"
    write(path, "x" * 50)
    seen = follower(path, backlog=1)
    wait_for(lambda: seen == ["x" * 50])
    seen.clear()
    write(path, "y")
    wait_for(lambda: seen == ["y"])
    os.truncate(path, 0)
    write(path, "z")  # still shorter than what was read before: the shrink shows
    wait_for(lambda: seen == ["y", "z"])


def test_follow_waits_for_a_missing_file(tmp_path: Path, follower) -> None:
    path = tmp_path / "later.log"
    seen = follower(path, backlog=5)
    write(path, "hello", "world")
    wait_for(lambda: seen == ["hello", "world"])
