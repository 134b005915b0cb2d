"""Size rotation and degraded logging with real files."""

from __future__ import annotations

from pathlib import Path

from watchkeeper.core.logs import KeeperLog, RotatingFile


def test_rotation_at_the_limit_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = RotatingFile(path, max_size=100, backups=2)
    for index in range(10):
        log.write(f"{index:02d}".encode() * 20 + b"\n")  # 41 bytes a line
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["job.log", "job.log.1", "job.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 100
    # Newest lines in the live file, older ones in .1, oldest surviving in .2.
    assert (tmp_path / "job.log").read_text().startswith("08")
    assert (tmp_path / "job.log.1").read_text().startswith("06")
    assert (tmp_path / "job.log.2").read_text().startswith("04")


def test_rotation_resumes_from_existing_size(tmp_path: Path) -> None:
    path = tmp_path / "keeper.log"
    path.write_bytes(b"x" * 90)
    log = RotatingFile(path, max_size=100, backups=1)
    log.write(b"y" * 20)
    log.close()
    assert (tmp_path / "keeper.log.1").read_bytes() == b"x" * 90
    assert path.read_bytes() == b"y" * 20


def test_zero_backups_truncates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = RotatingFile(path, max_size=10, backups=0)
    log.write(b"123456789\n")
    log.write(b"abc\n")
    log.close()
    assert path.read_bytes() == b"abc\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log"]


def test_failing_writes_degrade_and_report_once(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    errors: list[OSError] = []
    log = RotatingFile(
        blocked / "job.log", 1000, 1, on_error=lambda _path, error: errors.append(error)
    )
    for _ in range(5):
        log.write(b"line\n")  # must not raise
    assert len(errors) == 1
    assert log.failed_writes == 5


def test_keeper_log_lines_have_iso_offset_and_reach_listeners(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    log = KeeperLog(tmp_path / "watchkeeper.log", 10_000, 1, ZoneInfo("Europe/Berlin"))
    seen: list[tuple[str, str]] = []
    log.listeners.append(lambda stamp, level, message: seen.append((level, message)))
    log.info("hello")
    log.error("bad")
    log.close()
    lines = (tmp_path / "watchkeeper.log").read_text().splitlines()
    assert lines[0].split()[0][-6:] in ("+01:00", "+02:00")
    assert lines[0].split(maxsplit=2)[1:] == ["INFO", "hello"]
    assert seen == [("INFO", "hello"), ("ERROR", "bad")]


def test_keeper_log_failure_still_feeds_listeners(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    log = KeeperLog(blocked / "watchkeeper.log", 1000, 1)
    seen: list[str] = []
    log.listeners.append(lambda stamp, level, message: seen.append(message))
    log.info("still scheduling")
    assert seen == ["still scheduling"]


def test_a_name_that_is_not_utf8_is_logged_escaped_not_raised(tmp_path: Path) -> None:
    log = KeeperLog(tmp_path / "watchkeeper.log", 10_000, 1)
    name = b"Inbox/caf\xe9.txt".decode(errors="surrogateescape")  # as os.listdir gives it
    log.info(f"{name} arrived")
    log.defer = lambda flush: None  # a batch of lines, written together
    log.warning(f"{name} again")
    log.close()
    assert (
        (tmp_path / "watchkeeper.log")
        .read_text()
        .splitlines()[0]
        .endswith("Inbox/caf\\udce9.txt arrived")
    )
    assert "again" in (tmp_path / "watchkeeper.log").read_text()


def test_a_keeper_log_on_a_full_disk_drops_lines_and_warns_once(tmp_path: Path, capsys) -> None:
    path = tmp_path / "watchkeeper.log"
    path.symlink_to("/dev/full")  # every write: ENOSPC
    log = KeeperLog(path, 10_000, 1)
    for _ in range(3):
        log.error("cannot write history")  # must not raise
    log.close()
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"watchkeeper: cannot write {path}: No space left on device; logging degraded"
    ]


def test_stamp_writes_each_moment_as_datetime_isoformat_does() -> None:
    import random
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from watchkeeper.core.logs import Stamp

    rng = random.Random(7)
    # Around Berlin's autumn change (2026-10-25 01:00 UTC) and spring change, a moment
    # a microsecond either side of whole milliseconds and seconds included.
    starts = [1792890000.0, 1774746000.0]
    for name in ("Europe/Berlin", "UTC", "America/St_Johns"):
        tz = ZoneInfo(name)
        stamp = Stamp(tz)
        for start in starts:
            moment = start - 3600
            while moment < start + 3600:
                for edge in (0.0, 0.0009995, 0.0010005, 0.9999996, rng.random()):
                    probe = int(moment) + edge
                    expected = datetime.fromtimestamp(probe, tz).isoformat(timespec="milliseconds")
                    assert stamp.of(probe) == expected, (name, probe)
                moment += rng.uniform(0, 120)
