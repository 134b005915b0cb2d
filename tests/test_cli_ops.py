"""`watchkeeper logs`, `pause` and `resume` through the real entry point, on real files."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, pid_alive, run_cli, wait_for

from watchkeeper.core.lock import holder

CONFIG = """\
[jobs.nightly-report]
command = ["true"]
cron = "0 3 * * *"

[jobs.sweeper]
command = ["true"]
every = "5m"

[jobs.by-hand]
command = ["true"]
"""


@pytest.fixture
def vault(make_vault) -> Path:
    return make_vault(CONFIG)


def state(vault: Path) -> dict:
    return tomllib.loads((vault / "Logs" / "state.toml").read_text())


def keeper_line(index: int) -> str:
    return f"2026-01-01T00:00:{index:02d}.000+00:00 INFO  event {index}"


# ---- logs -------------------------------------------------------------------------


def test_logs_prints_the_last_lines_across_the_rotated_backup(vault: Path) -> None:
    logs = vault / "Logs"
    (logs / "watchkeeper.log.1").write_text("".join(keeper_line(i) + "\n" for i in range(15)))
    (logs / "watchkeeper.log").write_text("".join(keeper_line(i) + "\n" for i in range(15, 25)))
    result = run_cli("logs", "-n", "12", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [keeper_line(i) for i in range(13, 25)]
    default = run_cli("logs", "--vault", str(vault))
    assert default.stdout.splitlines() == [keeper_line(i) for i in range(5, 25)]


def test_logs_of_a_job(vault: Path) -> None:
    lines = [f"2026-01-01T03:00:0{i}.000+00:00 [run-{i}] output {i}" for i in range(5)]
    (vault / "Logs" / "jobs" / "nightly-report.log").write_text("\n".join(lines) + "\n")
    (vault / "Logs" / "watchkeeper.log").write_text(keeper_line(1) + "\n")
    result = run_cli("logs", "nightly-report", "--lines", "2", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines[-2:]


def test_logs_of_an_unknown_job_names_the_jobs(vault: Path) -> None:
    result = run_cli("logs", "nightly", "--vault", str(vault))
    assert result.returncode == 2
    assert "no job 'nightly'" in result.stderr
    assert "nightly-report, sweeper, by-hand" in result.stderr


def test_logs_of_a_job_that_never_ran(vault: Path) -> None:
    result = run_cli("logs", "by-hand", "--vault", str(vault))
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no log yet for job by-hand" in result.stderr


def _reader(stream) -> queue.Queue:
    """Lines of a child's stdout as they come, so the test can wait with a deadline."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _expect(lines: queue.Queue, wanted: str, timeout: float = 30) -> list[str]:
    """Read until `wanted` arrives; the lines read on the way, `wanted` last."""
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while not got or got[-1] != wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{wanted!r} not printed within {timeout}s; got {got}")
        try:
            got.append(lines.get(timeout=remaining))
        except queue.Empty:
            continue
    return got


@pytest.fixture
def cli_process() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_logs_follow_across_rotation_until_ctrl_c(vault: Path, cli_process) -> None:
    log = vault / "Logs" / "watchkeeper.log"
    log.write_text(keeper_line(0) + "\n" + keeper_line(1) + "\n")
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    process = subprocess.Popen(
        [str(CLI), "logs", "-f", "-n", "1", "--vault", str(vault)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "NO_COLOR": "1"},
    )
    cli_process.append(process)
    lines = _reader(process.stdout)
    assert _expect(lines, keeper_line(1)) == [keeper_line(1)]
    with log.open("a") as handle:
        handle.write(keeper_line(2) + "\n")
    assert _expect(lines, keeper_line(2)) == [keeper_line(2)]
    log.rename(log.with_name("watchkeeper.log.1"))
    log.write_text(keeper_line(3) + "\n")
    assert _expect(lines, keeper_line(3)) == [keeper_line(3)]
    process.send_signal(signal.SIGINT)
    # The newcomer's hang was SIGINT inherited as ignored (conftest takes it back); the
    # deadline only bounds a failing run, so it is generous for a busy box.
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert "Traceback" not in stderr and "Aborted" not in stderr


# ---- pause / resume -------------------------------------------------------------------


def test_pause_and_resume_a_job(vault: Path) -> None:
    result = run_cli("pause", "nightly-report", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "paused nightly-report (no keeper running; applies when one starts)"
    )
    assert state(vault) == {"paused": False, "paused_jobs": ["nightly-report"]}
    again = run_cli("pause", "nightly-report", "--vault", str(vault))
    assert again.returncode == 0 and "already paused" in again.stdout
    assert state(vault) == {"paused": False, "paused_jobs": ["nightly-report"]}
    result = run_cli("resume", "nightly-report", "--vault", str(vault))
    assert result.returncode == 0
    assert result.stdout.startswith("resumed nightly-report (no keeper running")
    assert state(vault) == {"paused": False, "paused_jobs": []}
    again = run_cli("resume", "nightly-report", "--vault", str(vault))
    assert again.returncode == 0 and "not paused" in again.stdout


def test_pause_and_resume_everything_keeps_jobs_paused_by_name(vault: Path) -> None:
    assert run_cli("pause", "sweeper", "--vault", str(vault)).returncode == 0
    result = run_cli("pause", "--vault", str(vault))
    assert result.returncode == 0 and result.stdout.startswith("paused everything (")
    assert state(vault) == {"paused": True, "paused_jobs": ["sweeper"]}
    assert "already paused" in run_cli("pause", "--vault", str(vault)).stdout
    result = run_cli("resume", "--vault", str(vault))
    assert result.returncode == 0 and result.stdout.startswith("resumed everything (")
    assert "still paused by name: sweeper" in result.stdout
    assert state(vault) == {"paused": False, "paused_jobs": ["sweeper"]}


def test_pause_or_resume_of_an_unknown_job_is_a_usage_error(vault: Path) -> None:
    for command in ("pause", "resume"):
        result = run_cli(command, "nope", "--vault", str(vault))
        assert result.returncode == 2
        assert "no job 'nope'" in result.stderr and "sweeper" in result.stderr
    assert not (vault / "Logs" / "state.toml").exists()


def test_resume_preview_lists_the_jobs_that_resume_and_changes_nothing(vault: Path) -> None:
    assert run_cli("pause", "--vault", str(vault)).returncode == 0
    assert run_cli("pause", "by-hand", "--vault", str(vault)).returncode == 0
    before = (vault / "Logs" / "state.toml").read_bytes()
    result = run_cli("resume", "--preview", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("resuming makes 2 job(s) active again")
    assert out[1].split() == ["nightly-report", "cron", "0", "3", "*", "*", "*"]
    assert out[2].split()[:2] == ["sweeper", "every"] and out[2].endswith(" 5m00s")
    assert "still paused by name: by-hand" in out
    assert out[-1] == "preview: nothing changed"
    single = run_cli("resume", "by-hand", "--preview", "--vault", str(vault))
    assert single.returncode == 0
    # by-hand would lose its own pause but still wait for the global one.
    assert single.stdout.splitlines() == [
        "resuming makes no job active again",
        "everything stays paused",
        "preview: nothing changed",
    ]
    assert (vault / "Logs" / "state.toml").read_bytes() == before
    assert run_cli("resume", "--vault", str(vault)).returncode == 0
    single = run_cli("resume", "by-hand", "--preview", "--vault", str(vault))
    assert single.stdout.splitlines()[1].split() == ["by-hand", "manual"]
    assert state(vault) == {"paused": False, "paused_jobs": ["by-hand"]}


FAKE_KEEPER = textwrap.dedent(
    """\
    import signal, sys, time
    from pathlib import Path
    from watchkeeper.core.lock import acquire

    vault, marker, catch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "catch"
    if catch:
        signal.signal(signal.SIGHUP, lambda *_: marker.write_text("reload"))
    lock = acquire(vault)  # last: holding the lock means the handler is in place
    while True:
        time.sleep(0.05)
    """
)


@pytest.fixture
def fake_keeper(tmp_path: Path) -> Iterator:
    """A process holding the vault's lock, with or without a SIGHUP handler."""
    started: list[subprocess.Popen] = []

    def start(vault: Path, catch: bool) -> tuple[subprocess.Popen, Path]:
        marker = tmp_path / "hup-marker"
        process = subprocess.Popen(
            [sys.executable, "-c", FAKE_KEEPER, str(vault), str(marker), "catch" if catch else ""],
            cwd=Path(__file__).parent.parent,
        )
        started.append(process)
        wait_for(lambda: (holder(vault) or {}).get("pid") == process.pid)
        return process, marker

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=5)


def test_pause_tells_a_keeper_on_this_host(vault: Path, fake_keeper) -> None:
    process, marker = fake_keeper(vault, catch=True)
    result = run_cli("pause", "nightly-report", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"paused nightly-report (keeper pid {process.pid} told)"
    wait_for(marker.exists)
    assert state(vault)["paused_jobs"] == ["nightly-report"]
    marker.unlink()
    result = run_cli("resume", "nightly-report", "--vault", str(vault))
    assert result.stdout.strip() == f"resumed nightly-report (keeper pid {process.pid} told)"
    wait_for(marker.exists)
    assert state(vault)["paused_jobs"] == []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_pause_does_not_kill_a_keeper_that_cannot_reload(vault: Path, fake_keeper) -> None:
    # SIGHUP's default action ends a process: a keeper without a handler is left alone.
    process, _ = fake_keeper(vault, catch=False)
    result = run_cli("pause", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert f"keeper pid {process.pid} does not reload on SIGHUP" in result.stdout
    assert pid_alive(process.pid)
    assert state(vault)["paused"] is True
