"""The runner with real child processes: exit codes, output, timeouts, process groups."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import pid_alive

from watchkeeper.core import runner, tuning
from watchkeeper.core.runner import Run, RunSpec, Spawned, Spawner, SpawnResult


async def gone(pid: int, timeout: float = 5.0) -> bool:
    """A process whose output just closed may need a moment more to finish exiting."""
    deadline = asyncio.get_running_loop().time() + timeout
    while pid_alive(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def run(argv: list[str], tmp_path: Path, **spec: Any) -> tuple[Run, bytes]:
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


async def test_output_bigger_than_the_pipe_is_all_kept(tmp_path: Path) -> None:
    # The child blocks on a full pipe until the loop starts watching it.
    size = 300_000
    handle, output = await run(
        [sys.executable, "-c", f"import sys; sys.stdout.write('x' * {size})"], tmp_path
    )
    assert handle.done.result().status == "success"
    assert output == b"x" * size


async def test_a_long_run_streams_its_output_before_it_ends(tmp_path: Path) -> None:
    output = bytearray()
    handle = Run(
        RunSpec("r1", ["sh", "-c", "echo first; exec sleep 30"], dict(os.environ), tmp_path),
        output.extend,
    )
    deadline = time.monotonic() + 10
    while output != b"first\n":
        assert time.monotonic() < deadline, "the output of a running run never arrived"
        await asyncio.sleep(0.01)
    assert not handle.done.done()
    handle.stop("cancelled", "cancelled by test")
    assert (await asyncio.wait_for(handle.done, 30)).status == "cancelled"


async def test_a_leftover_writing_on_after_a_quick_leader_is_watched(tmp_path: Path) -> None:
    # The leader is gone before its pipe was watched; the leftover ignores TERM and keeps
    # writing. Its output is read on (more than the reads taken at the leader's exit)
    # until the grace period is up and it is killed.
    pid_file = tmp_path / "bg"
    ready = f"until [ -s {pid_file} ]; do :; done"  # the leftover ignores TERM by then
    received = [0]

    def count(data: bytes) -> None:
        received[0] += len(data)

    handle = Run(
        RunSpec(
            "r1",
            ["sh", "-c", f"(trap '' TERM; sh -c 'echo $PPID' > {pid_file}; exec yes) & {ready}"],
            dict(os.environ),
            tmp_path,
            kill_grace=0.3,
        ),
        count,
    )
    outcome = await asyncio.wait_for(handle.done, 30)
    assert outcome.status == "success"
    assert received[0] > (tuning.EXIT_READS + 1) * tuning.READ_SIZE
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


async def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_spawner_hands_each_run_back_once_on_the_loop(tmp_path: Path) -> None:
    batches: list[list[SpawnResult]] = []
    on_thread: set[int] = set()

    def deliver(batch: list[SpawnResult]) -> None:
        on_thread.add(threading.get_ident())
        batches.append(batch)

    spawner = Spawner(3, deliver)
    specs = {
        f"r{index}": RunSpec(f"r{index}", ["sh", "-c", f"exit {index}"], dict(os.environ), tmp_path)
        for index in range(12)
    }
    specs["ghost"] = RunSpec("ghost", ["/nonexistent/tool"], {}, tmp_path)
    spawner.submit(list(specs.items()))
    await until(lambda: sum(map(len, batches)) >= len(specs))
    spawner.shutdown()

    results = [item for batch in batches for item in batch]
    assert sorted(token for token, _ in results) == sorted(specs)
    assert on_thread == {threading.get_ident()}
    outcomes = {}
    for token, result in results:
        if token == "ghost":
            assert isinstance(result, FileNotFoundError)
            continue
        assert isinstance(result, Spawned)
        assert result.read_end is None or not os.get_blocking(result.read_end)
        handle = Run(specs[token], lambda _: None, spawned=result)
        outcomes[token] = (await asyncio.wait_for(handle.done, 30)).exit_code
    assert outcomes == {f"r{index}": index for index in range(12)}


async def test_spawner_holds_results_back_while_more_spawns_wait(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tuning, "HOLD_MAX", 60.0)
    batches: list[list[SpawnResult]] = []
    spawner = Spawner(1, batches.append)
    spec = RunSpec("r", ["true"], dict(os.environ), tmp_path)
    spawner.submit([(index, spec) for index in range(5)])
    await until(lambda: batches)
    spawner.shutdown()
    # One thread, five queued: nothing came back until the last had started.
    assert [[token for token, _ in batch] for batch in batches] == [[0, 1, 2, 3, 4]]
    for _, spawned in batches[0]:
        assert isinstance(spawned, Spawned)
        await asyncio.wait_for(Run(spec, lambda _: None, spawned=spawned).done, 30)


async def test_held_back_runs_are_read_ahead_and_their_spent_pipes_closed(
    tmp_path: Path, monkeypatch
) -> None:
    # Each pipe held open makes every later spawn dearer; a short job's output is taken
    # while its run is held back, and nothing of it is lost or doubled.
    monkeypatch.setattr(tuning, "HOLD_MAX", 60.0)
    real_spawn = runner.spawn
    previous: list[Spawned] = []

    def spawn_once_the_previous_is_over(spec: RunSpec) -> Spawned:
        if previous:
            before = previous[-1]
            deadline = time.monotonic() + 10
            while (
                os.waitid(os.P_PID, before.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                is None
                or time.monotonic() - before.started_mono < tuning.READ_AHEAD_AGE
            ):
                assert time.monotonic() < deadline, "the previous child did not end"
                time.sleep(0.001)
        previous.append(real_spawn(spec))
        return previous[-1]

    monkeypatch.setattr(runner, "spawn", spawn_once_the_previous_is_over)
    batches: list[list[SpawnResult]] = []
    spawner = Spawner(1, batches.append)
    specs = {
        index: RunSpec(f"r{index}", ["sh", "-c", f"echo out{index}"], dict(os.environ), tmp_path)
        for index in range(5)
    }
    spawner.submit(list(specs.items()))
    await until(lambda: batches)
    spawner.shutdown()
    assert len(batches) == 1 and [token for token, _ in batches[0]] == list(range(5))
    spawned = [result for _, result in batches[0] if isinstance(result, Spawned)]
    assert len(spawned) == 5, batches[0]
    # Each run is read ahead by the spawn after it: all but the last.
    assert [result.read_end is None for result in spawned] == [True] * 4 + [False]
    assert [result.early_output for result in spawned[:4]] == [
        b"out0\n",
        b"out1\n",
        b"out2\n",
        b"out3\n",
    ]
    for index, result in enumerate(spawned):
        output: list[bytes] = []
        run = Run(specs[index], output.append, spawned=result)
        assert (await asyncio.wait_for(run.done, 30)).exit_code == 0
        assert b"".join(output) == f"out{index}\n".encode()


async def test_a_few_runs_are_started_on_the_loop_and_a_burst_on_threads(tmp_path: Path) -> None:
    batches: list[list[SpawnResult]] = []
    spawner = Spawner(2, batches.append)
    specs = [
        (index, RunSpec(f"r{index}", ["sh", "-c", f"exit {index}"], dict(os.environ), tmp_path))
        for index in range(tuning.INLINE_MAX + 1)
    ]
    threads = threading.active_count()
    spawner.submit(specs[:-1])
    # Started and handed back before submit() returned, without a spawner thread.
    assert [[token for token, _ in batch] for batch in batches] == [list(range(tuning.INLINE_MAX))]
    assert threading.active_count() == threads
    spawner.submit(specs)  # one more than that is a burst: the threads take it
    assert len(batches) == 1
    await until(lambda: sum(map(len, batches)) == 2 * tuning.INLINE_MAX + 1)
    assert threading.active_count() > threads
    spawner.shutdown()
    by_spec = dict(specs)
    for token, spawned in (item for batch in batches for item in batch):
        assert isinstance(spawned, Spawned)
        outcome = await asyncio.wait_for(
            Run(by_spec[token], lambda _: None, spawned=spawned).done, 30
        )
        assert outcome.exit_code == token


async def test_while_a_burst_waits_a_lone_run_queues_behind_it(tmp_path: Path, monkeypatch) -> None:
    real_spawn = runner.spawn
    release = threading.Event()

    def held_spawn(spec: RunSpec) -> Spawned:
        if threading.current_thread() is not threading.main_thread():
            assert release.wait(30)
        return real_spawn(spec)

    monkeypatch.setattr(runner, "spawn", held_spawn)
    batches: list[list[SpawnResult]] = []
    spawner = Spawner(1, batches.append)
    spec = RunSpec("r", ["true"], dict(os.environ), tmp_path)
    spawner.submit([(index, spec) for index in range(tuning.INLINE_MAX + 2)])
    spawner.submit([("lone", spec)])
    assert batches == []  # not spawned on the loop ahead of the runs already waiting
    release.set()
    await until(lambda: sum(map(len, batches)) == tuning.INLINE_MAX + 3)
    spawner.shutdown()
    tokens = [token for batch in batches for token, _ in batch]
    assert tokens == [*range(tuning.INLINE_MAX + 2), "lone"]
    for _, spawned in (item for batch in batches for item in batch):
        assert isinstance(spawned, Spawned)
        await asyncio.wait_for(Run(spec, lambda _: None, spawned=spawned).done, 30)


async def test_after_a_slow_spawn_lone_spawns_go_to_a_thread(tmp_path: Path, monkeypatch) -> None:
    real_spawn = runner.spawn

    def slow_spawn(spec: RunSpec) -> Spawned:
        time.sleep(tuning.SLOW_SPAWN * 2)  # as an exec from a slow file system would be
        return real_spawn(spec)

    monkeypatch.setattr(runner, "spawn", slow_spawn)
    batches: list[list[SpawnResult]] = []
    spawner = Spawner(2, batches.append)
    spec = RunSpec("r", ["true"], dict(os.environ), tmp_path)
    spawner.submit([("first", spec)])
    assert len(batches) == 1  # on the loop, as it was not known to be slow yet
    spawner.submit([("second", spec)])
    assert len(batches) == 1  # left to a thread: the loop does not wait for it
    await until(lambda: len(batches) == 2)
    spawner.shutdown()
    assert [token for batch in batches for token, _ in batch] == ["first", "second"]
    for _, spawned in (item for batch in batches for item in batch):
        assert isinstance(spawned, Spawned)
        await asyncio.wait_for(Run(spec, lambda _: None, spawned=spawned).done, 30)


async def test_a_leader_reaped_by_someone_else_ends_as_exit_status_lost(tmp_path: Path) -> None:
    handle = Run(RunSpec("r1", ["true"], dict(os.environ), tmp_path), lambda _: None)
    # Reaped before the loop hears of the exit (another library's waitpid(-1), say).
    os.waitpid(handle.pid, 0)
    outcome = await asyncio.wait_for(handle.done, 30)
    assert (outcome.status, outcome.exit_code, outcome.error) == (
        "failure",
        None,
        "exit status lost",
    )


async def test_an_ended_run_lets_go_of_its_end_listeners() -> None:
    # A listener holds the keeper's record of the run, which holds the run: kept after
    # the end, that cycle (and the run's environment) would wait for a full collection.
    import gc
    import weakref

    from watchkeeper.core.runner import Ending, RunOutcome

    class Record:
        run: Ending

    heard: list[RunOutcome] = []
    record = Record()
    record.run = Ending(asyncio.get_running_loop())
    record.run.on_end(lambda outcome, record=record: heard.append(outcome))
    gone = weakref.ref(record.run)
    collecting = gc.isenabled()
    gc.disable()
    try:
        record.run.finish_with(RunOutcome("success", 0, None, 5))
        assert heard == [RunOutcome("success", 0, None, 5)]
        del record
        assert gone() is None
    finally:
        if collecting:
            gc.enable()


async def test_done_asked_for_after_the_end_holds_the_outcome_and_a_cancelled_one_is_left_be(
    tmp_path: Path,
) -> None:
    # `done` is made when first asked for (the keeper listens through on_end): asked for
    # late, it is resolved already; given up by a waiter (cancelled), the end still comes.
    from watchkeeper.core.runner import Ending, RunOutcome

    output = bytearray()
    handle = Run(RunSpec("r1", ["true"], dict(os.environ), tmp_path), output.extend)
    ended: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
    handle.on_end(ended.set_result)
    outcome = await asyncio.wait_for(ended, 30)
    assert handle.done.done() and handle.done.result() == outcome == handle.final

    waited = Ending(asyncio.get_running_loop())
    waited.done.cancel()
    heard: list[RunOutcome] = []
    waited.on_end(heard.append)
    waited.finish_with(RunOutcome("success", 0, None, 1))
    assert heard == [RunOutcome("success", 0, None, 1)] and waited.done.cancelled()
