"""The runner with real child processes: exit codes, output, timeouts, process groups."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import pid_alive

from core.runner import Run, RunSpec


async def gone(pid: int, timeout: float = 5.0) -> bool:
    """A process whose output just closed may need a moment more to finish exiting."""
    deadline = asyncio.get_running_loop().time() + timeout
    while pid_alive(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def run(argv: list[str], tmp_path: Path, **spec: object) -> tuple[Run, bytes]:
    output = bytearray()
    handle = Run(RunSpec("r1", argv, dict(os.environ), tmp_path, **spec), output.extend)
    await asyncio.wait_for(handle.done, 30)
    return handle, bytes(output)


async def test_success_captures_stdout_and_stderr(tmp_path: Path) -> None:
    handle, output = await run(["sh", "-c", "echo out; echo err >&2"], tmp_path)
    outcome = handle.done.result()
    assert (outcome.status, outcome.exit_code, outcome.error) == ("success", 0, None)
    assert output == b"out\nerr\n"


async def test_nonzero_exit_is_failure_with_code(tmp_path: Path) -> None:
    handle, _ = await run(["sh", "-c", "exit 7"], tmp_path)
    outcome = handle.done.result()
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failure", 7, "exit code 7")


async def test_killed_by_signal_is_failure_named(tmp_path: Path) -> None:
    handle, _ = await run(["sh", "-c", "kill -KILL $$"], tmp_path)
    outcome = handle.done.result()
    assert outcome.status == "failure"
    assert outcome.exit_code == 128 + signal.SIGKILL
    assert outcome.error == "ended by SIGKILL"


async def test_runs_in_its_own_process_group_and_cwd(tmp_path: Path) -> None:
    handle, output = await run(
        [sys.executable, "-c", "import os; print(os.getpgid(0) == os.getpid(), os.getcwd())"],
        tmp_path,
    )
    assert output.decode().split() == ["True", str(tmp_path)]
    assert os.getpgid(0) != handle.pid


async def test_timeout_ends_child_and_grandchild(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    output = bytearray()
    handle = Run(
        RunSpec("r1", ["sh", "-c", script], dict(os.environ), tmp_path, timeout=0.5, kill_grace=2),
        output.extend,
    )
    outcome = await asyncio.wait_for(handle.done, 30)
    assert outcome.status == "timeout"
    assert outcome.error == "timed out after 500ms"
    grandchild, child = (int(line) for line in pids.read_text().split())
    assert await gone(child)
    assert await gone(grandchild)


async def test_term_ignoring_group_is_killed_after_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done"
    handle = Run(
        RunSpec("r1", ["sh", "-c", script], dict(os.environ), tmp_path, kill_grace=0.3),
        lambda _: None,
    )
    while not ready.exists():
        await asyncio.sleep(0.01)
    handle.stop("cancelled", "cancelled by test")
    outcome = await asyncio.wait_for(handle.done, 30)
    assert (outcome.status, outcome.error) == ("cancelled", "cancelled by test")
    assert outcome.exit_code == 128 + signal.SIGKILL
    assert await gone(handle.pid)


async def test_leftovers_are_ended_when_the_main_process_exits(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg"
    handle, _ = await run(
        ["sh", "-c", f"sleep 300 > /dev/null 2>&1 & echo $! > {pid_file}"], tmp_path, kill_grace=1
    )
    assert handle.done.result().status == "success"
    assert await gone(int(pid_file.read_text()))


async def test_leftover_holding_output_is_killed_after_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg"
    script = (
        f"sh -c 'trap \"\" TERM; echo $$ > {pid_file}; while :; do sleep 0.05; done' & sleep 0.2"
    )
    handle, _ = await run(["sh", "-c", script], tmp_path, kill_grace=0.3)
    assert handle.done.result().status == "success"
    assert await gone(int(pid_file.read_text()))


async def test_missing_command_raises_at_spawn(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Run(RunSpec("r1", ["/nonexistent/tool"], {}, tmp_path), lambda _: None)


async def test_environment_reaches_the_child(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "WATCHKEEPER_RUN_ID": "abc", "ODD": "a b $(x) ;"}
    output = bytearray()
    handle = Run(
        RunSpec("abc", ["sh", "-c", 'printf "%s|%s" "$WATCHKEEPER_RUN_ID" "$ODD"'], env, tmp_path),
        output.extend,
    )
    await asyncio.wait_for(handle.done, 30)
    assert bytes(output) == b"abc|a b $(x) ;"
