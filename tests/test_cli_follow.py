"""The following commands through the real entry point: `history -f`, `logs --all [-f]`
and `run JOB --wait --follow`, each read line by line while it runs, with deadlines."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CLI, final_records, run_cli


class Lines:
    """A child's stdout, line by line as it comes, so a test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def until(self, wanted: Callable[[str], bool] | str, timeout: float = 20) -> str:
        """Read until a line matches; that line."""
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{wanted!r} not printed within {timeout}s; got {self.seen}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match(line):
                return line


@pytest.fixture
def spawn() -> Iterator[Callable[..., tuple[subprocess.Popen, Lines]]]:
    started: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, Lines]:
        env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
        process = subprocess.Popen(
            [str(CLI), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "NO_COLOR": "1"},
        )
        started.append(process)
        return process, Lines(process)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def interrupt(process: subprocess.Popen) -> str:
    """Ctrl-C ends a follow: exit 0, no traceback. Its stderr."""
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert "Traceback" not in stderr and "Aborted" not in stderr
    return stderr


# ---- history -f -------------------------------------------------------------------------

JOBS = """
[jobs.ok]
command = ["sh", "-c", "echo fine"]
[jobs.other]
command = ["true"]
"""


def test_history_follow_prints_new_records_as_they_are_written(make_vault, spawn) -> None:
    vault = make_vault(JOBS)
    v = ("--vault", str(vault))
    assert run_cli("run", "ok", *v).returncode == 0
    first = next(iter(final_records(vault)))
    process, lines = spawn("history", "-f", "--job", "ok", *v)
    header = lines.until(lambda line: line.startswith("STARTED"))
    assert header.split() == [
        "STARTED",
        "JOB",
        "STATUS",
        "DURATION",
        "TRIGGER",
        "RUN",
        "ID",
        "ERROR",
    ]
    lines.until(lambda line: first in line and "✔ success" in line)
    assert run_cli("run", "other", *v).returncode == 0  # filtered out
    assert run_cli("run", "ok", *v).returncode == 0
    second = next(
        r["id"] for r in final_records(vault).values() if r["id"] != first and r["taskId"] == "ok"
    )
    lines.until(lambda line: second in line and "▶ running" in line)
    done = lines.until(lambda line: second in line and "✔ success" in line)
    assert done.split()[2] == "ok" and "manual" in done
    interrupt(process)
    assert not [line for line in lines.seen if " other " in line]


def test_history_follow_json_is_one_record_a_line(make_vault, spawn) -> None:
    vault = make_vault(JOBS)
    v = ("--vault", str(vault))
    process, lines = spawn("history", "-f", "--json", "--status", "success", *v)
    assert run_cli("run", "ok", *v).returncode == 0
    record = json.loads(lines.until(lambda line: line.startswith("{")))
    assert (record["taskId"], record["status"]) == ("ok", "success")
    interrupt(process)


# ---- logs --all ------------------------------------------------------------------------


def stamp(second: int, offset: str = "+00:00") -> str:
    return f"2026-01-01T00:00:{second:02d}.000{offset}"


def test_logs_all_merges_every_log_in_time_order(make_vault) -> None:
    vault = make_vault(JOBS)
    logs = vault / "Logs"
    (logs / "watchkeeper.log").write_text(
        f"{stamp(1)} INFO  keeper started\n{stamp(5)} INFO  run r2 of other started\n"
    )
    (logs / "jobs" / "ok.log").write_text(f"{stamp(2)} [r1] fine\n{stamp(6)} [r3] again\n")
    # Another offset: 01:00:04+01:00 is 00:00:04 UTC.
    (logs / "jobs" / "other.log.1").write_text("2026-01-01T01:00:03.000+01:00 [r0] older\n")
    (logs / "jobs" / "other.log").write_text("2026-01-01T01:00:04.000+01:00 [r2] done\n")
    result = run_cli("logs", "--all", "-n", "5", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert [line.split(None, 2)[1:] for line in result.stdout.splitlines()] == [
        ["ok", "[r1] fine"],
        ["other", "[r0] older"],
        ["other", "[r2] done"],
        ["(keeper)", "INFO  run r2 of other started"],
        ["ok", "[r3] again"],
    ]
    both = run_cli("logs", "ok", "--all", "--vault", str(vault))
    assert both.returncode == 2 and "not both" in both.stderr


def test_logs_all_follow_picks_up_new_lines_new_logs_and_rotation(make_vault, spawn) -> None:
    vault = make_vault(JOBS)
    logs = vault / "Logs"
    keeper = logs / "watchkeeper.log"
    keeper.write_text(f"{stamp(1)} INFO  keeper started\n")
    process, lines = spawn("logs", "--all", "-f", "-n", "1", "--vault", str(vault))
    lines.until(lambda line: line.endswith("INFO  keeper started"))
    with keeper.open("a") as file:
        file.write(f"{stamp(2)} INFO  run r1 of ok started\n")
    lines.until(lambda line: line.endswith("run r1 of ok started"))
    (logs / "jobs" / "ok.log").write_text(f"{stamp(3)} [r1] fine\n")  # a log that is new
    assert lines.until(lambda line: line.endswith("[r1] fine")).split()[1] == "ok"
    keeper.rename(keeper.with_name("watchkeeper.log.1"))
    keeper.write_text(f"{stamp(4)} INFO  after rotation\n")
    lines.until(lambda line: line.endswith("INFO  after rotation"))
    interrupt(process)


# ---- run --wait --follow ------------------------------------------------------------------

# The first attempt prints a line, then waits for the test's go-ahead before failing:
# the line must have reached the test while the run was still going.
FLAKY = """
[jobs.flaky]
command = ["sh", "-c", '''
if [ "$WATCHKEEPER_TRIGGER" = retry ]; then echo second try; exit 0; fi
echo first try
while [ ! -e "$WATCHKEEPER_VAULT/go" ]; do sleep 0.05; done
exit 3
''']
retries = 1
retry_delay = "100ms"
"""


def follow_flaky(vault: Path, spawn, where: str) -> None:
    process, lines = spawn("run", "flaky", "--wait", "--follow", "--vault", str(vault))
    started = lines.until(lambda line: line.startswith("started run "))
    assert started.endswith(f"of flaky ({where})")
    lines.until("first try")
    assert process.poll() is None
    (vault / "go").touch()
    failed = lines.until(lambda line: line.startswith("✘ failure  flaky  run "))
    assert "exit code 3" in failed
    retry = lines.until(lambda line: line.startswith("↻ "))
    assert retry.startswith("↻ flaky: attempt 1 failure; retry 2 of 2 in ")
    lines.until("second try")
    done = lines.until(lambda line: line.startswith("✔ success  flaky  run "))
    assert "(attempt 2)" in done and f"({where})" in done
    assert process.wait(timeout=20) == 0
    trail = lines.seen
    assert trail.index("first try") < trail.index(failed) < trail.index(retry)
    assert trail.index(retry) < trail.index("second try") < trail.index(done)


def test_run_follow_through_the_keeper_streams_output_and_retries(make_vault, daemon, spawn):
    vault = make_vault(FLAKY)
    process = daemon(vault)
    follow_flaky(vault, spawn, f"through keeper pid {process.pid}")


def test_run_follow_locally_streams_output_and_retries(make_vault, spawn) -> None:
    follow_flaky(make_vault(FLAKY), spawn, "locally")


def test_follow_needs_wait(make_vault) -> None:
    vault = make_vault(FLAKY)
    result = run_cli("run", "flaky", "--follow", "--vault", str(vault))
    assert result.returncode == 2 and "--follow goes with --wait" in result.stderr
