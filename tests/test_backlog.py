"""Lines that cannot be written (full disk, a folder gone wrong) are kept in memory,
bounded, and written late in order: history segments and the file ledger alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from watchkeeper.core.appender import Appender
from watchkeeper.core.ledger import Ledger
from watchkeeper.core.logs import KeeperLog

ROOT = Path(__file__).parent.parent


def read_log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_past_the_memory_bound_the_oldest_lines_are_dropped_loudly(tmp_path: Path) -> None:
    log_path = tmp_path / "keeper.log"
    log = KeeperLog(log_path, 1_000_000, 1)
    target = tmp_path / "out.jsonl"
    target.mkdir()  # cannot be opened for writing
    out: Appender[None] = Appender("history", lambda _key: target, log, max_lines=3)
    for n in range(25):
        out.add(None, f"line {n}\n".encode())
        out.write()
    assert out.waiting() == [b"line 22\n", b"line 23\n", b"line 24\n"]
    assert out.dropped == 22
    drops = [line for line in read_log(log_path).splitlines() if "dropped the oldest" in line]
    # Loud, with the count, but once per tenfold rather than once a line.
    assert [line.split("(")[-1] for line in drops] == ["1 so far)", "10 so far)"]

    target.rmdir()
    out.close()
    log.close()
    assert target.read_bytes() == b"line 22\nline 23\nline 24\n"
    assert (
        "wrote 3 history line(s) late after: Is a directory"
        f" ({target}); 22 were dropped, over the memory bound" in read_log(log_path)
    )


def test_a_write_the_disk_cut_short_is_finished_when_room_returns(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel cut a write short and fail the next one (EFBIG), as
    a disk filling up mid-line does; the line is finished, not torn, once it may grow."""
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from watchkeeper.core.history import HistoryWriter, RunRecord
        from watchkeeper.core.logs import KeeperLog

        history, log_path = Path(sys.argv[1]), Path(sys.argv[2])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        log = KeeperLog(log_path, 1_000_000, 1)
        log.info("x" * 100)  # the log file exists before the limit applies to it
        writer = HistoryWriter(history, log)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        t0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
        for n in range(6):
            writer.append(RunRecord(id=f"r{n}", job="alpha", project="v", started_at=t0
                + timedelta(seconds=n), status="running", trigger="schedule", host="h"))
        print(writer.backlog)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        writer.flush()
        print(writer.backlog)
        writer.close()
        log.close()
        """
    )
    history = tmp_path / "history"
    log_path = tmp_path / "keeper.log"
    done = subprocess.run(
        [sys.executable, "-c", script, str(history), str(log_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    held, left = done.stdout.split()
    assert int(held) >= 2 and int(left) == 0  # the third line or so hit the limit
    lines = (history / "2025-03-14.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"r{n}" for n in range(6)]
    assert f"wrote {held} history line(s) late after: File too large" in read_log(log_path)


def test_ledger_lines_wait_for_the_disk_and_count_meanwhile(tmp_path: Path) -> None:
    """The ledger cannot grow (RLIMIT_FSIZE at its size: EFBIG, a full disk's twin) but
    can still be read, as a reload (SIGHUP) does meanwhile."""
    script = textwrap.dedent(
        """
        import os, resource, signal, sys
        from pathlib import Path
        from watchkeeper.core.ledger import Ledger
        from watchkeeper.core.logs import KeeperLog

        path, log_path = Path(sys.argv[1]), Path(sys.argv[2])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        log = KeeperLog(log_path, 1_000_000, 1)
        log.info("x" * 200)
        ledger = Ledger(path, log)
        ledger.record("eat", "Inbox/a.md", "h1", "success", "run1")
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size, hard))
        ledger.record("eat", "Inbox/b.md", "h2", "success", "run2")
        ledger.record("eat", "Inbox/c.md", "h3", "failure", "run3")
        assert ledger.out.backlog == 2, ledger.out.backlog
        ledger.load()  # a reload reads the file again: what waits in memory still counts
        assert not ledger.wants("eat", "Inbox/b.md", "h2")
        assert ledger.state("eat", "Inbox/c.md", "h3").failures == 1
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        ledger.record("eat", "Inbox/d.md", "h4", "success", "run4")
        ledger.out.close()
        log.close()
        """
    )
    path = tmp_path / "Logs" / "files.jsonl"
    log_path = tmp_path / "keeper.log"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(log_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["path"] for line in path.read_bytes().splitlines()] == [
        "Inbox/a.md",
        "Inbox/b.md",
        "Inbox/c.md",
        "Inbox/d.md",
    ]
    assert "wrote 2 file ledger line(s) late after: File too large" in read_log(log_path)
    restarted = Ledger(path)
    restarted.load()
    assert not restarted.wants("eat", "Inbox/b.md", "h2") and restarted.bad_lines == 0


def test_lines_still_held_at_close_are_reported_lost(tmp_path: Path) -> None:
    log_path = tmp_path / "keeper.log"
    log = KeeperLog(log_path, 1_000_000, 1)
    path = tmp_path / "files.jsonl"
    path.mkdir()
    ledger = Ledger(path, log)
    ledger.record("eat", "Inbox/a.md", "h1", "success", "run1")
    ledger.out.close()
    log.close()
    assert "1 file ledger line(s) are lost, never written: Is a directory" in read_log(log_path)
