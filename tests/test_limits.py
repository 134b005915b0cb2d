"""Issue 18: resource limits. Real children under real rlimits, cgroups and nice levels on
this host (whichever way it enforces them); the systemd-run line built for a host with a
user manager; validate's table of what this host enforces."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli

from watchkeeper.core.config import ConfigError, parse_config
from watchkeeper.core.limits import Evidence, Limits, limit_hit, weight_as_ionice, weight_as_nice
from watchkeeper.core.limits_apply import (
    LimitError,
    counter,
    prepare,
    scope_argv,
    scope_cgroup,
    user_processes,
)
from watchkeeper.core.limits_host import HostLimits, enforcement, host_limits, user_manager
from watchkeeper.core.runner import Run, RunOutcome, RunSpec

HOST = host_limits()
NO_MANAGER = HostLimits(None, None, "/usr/bin/ionice", root=False, lower_nice=True)
WITH_MANAGER = HostLimits("/usr/bin/systemd-run", None, None, root=False, lower_nice=True)


async def run(
    tmp_path: Path, argv: list[str], limits: Limits, **spec: float
) -> tuple[RunOutcome, bytes, Run]:
    output = bytearray()
    handle = Run(
        RunSpec("r1", argv, dict(os.environ), tmp_path, job="j", limits=limits, **spec),
        output.extend,
    )
    return await handle.done, bytes(output), handle


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- config ------------------------------------------------------------------------------


def test_limit_keys_load_with_their_values(tmp_path: Path) -> None:
    text = (
        '[jobs.a]\ncommand = "true"\nmemory_max = "512MB"\ntasks_max = 64\n'
        "cpu_weight = 50\nnice = 5\nio_weight = 200\n"
    )
    job = parse_config(text, tmp_path / "watchkeeper.toml").jobs["a"]
    assert (job.memory_max, job.tasks_max, job.cpu_weight, job.nice, job.io_weight) == (
        512 * 2**20,
        64,
        50,
        5,
        200,
    )


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('memory_max = "1KB"', "memory_max", "expected a size from 4MB to 1TB"),
        ("memory_max = true", "memory_max", "expected a size like '5MB'"),
        ("tasks_max = 0", "tasks_max", "expected an integer from 1 to 1,000,000"),
        ("cpu_weight = 10001", "cpu_weight", "expected an integer from 1 to 10,000"),
        ("nice = -21", "nice", "expected an integer from -20 to 19"),
        ("io_weight = 1.5", "io_weight", "expected an integer from 1 to 10,000"),
    ],
)
def test_validate_refuses_limits_out_of_bounds(make_vault, line: str, key: str, message: str):
    vault = make_vault(f'[jobs.a]\ncommand = "true"\n{line}\n')
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 2
    assert f"watchkeeper.toml:3: jobs.a.{key}: {message}" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_http_job_takes_no_limits(tmp_path: Path) -> None:
    text = '[jobs.a]\nhttp = { url = "http://127.0.0.1:9/" }\nmemory_max = "64MB"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "watchkeeper.toml")
    [issue] = caught.value.issues
    assert (issue.line, issue.key) == (3, "jobs.a.memory_max")
    assert "http job starts no process" in issue.message


# --- how a run is started under its limits -------------------------------------------------


def test_the_systemd_run_line_holds_each_limit_and_then_the_command() -> None:
    limits = Limits(memory_max=512 * 2**20, tasks_max=64, cpu_weight=50, io_weight=200)
    line = scope_argv("/usr/bin/systemd-run", "watchkeeper-j-r1.scope", limits, ["sh", "-c", "x"])
    assert line == [
        "/usr/bin/systemd-run",
        "--user",
        "--scope",
        "--quiet",
        "--collect",
        "--unit=watchkeeper-j-r1.scope",
        "-p",
        f"MemoryMax={512 * 2**20}",
        "-p",
        "MemorySwapMax=0",
        "-p",
        "TasksMax=64",
        "-p",
        "CPUWeight=50",
        "-p",
        "IOWeight=200",
        "--",
        "sh",
        "-c",
        "x",
    ]
    only_tasks = scope_argv("/x/systemd-run", "u.scope", Limits(tasks_max=3), ["true"])
    assert only_tasks[-5:] == ["--unit=u.scope", "-p", "TasksMax=3", "--", "true"]


def test_with_a_user_manager_a_run_goes_in_a_scope_with_nice_set_in_the_child() -> None:
    limited = prepare(Limits(memory_max=64 * 2**20, nice=3), ["true"], "j", "r1", WITH_MANAGER)
    assert limited.argv[:3] == ["/usr/bin/systemd-run", "--user", "--scope"]
    assert "--unit=watchkeeper-j-r1.scope" in limited.argv
    assert (limited.in_scope, limited.nice, limited.data_max, limited.nproc_max) == (
        True,
        3,
        None,
        None,
    )
    # cpu_weight is the scope's CPUWeight there, not turned into a nice level.
    assert prepare(Limits(cpu_weight=50), ["true"], "j", "r1", WITH_MANAGER).nice is None


def test_without_one_rlimits_nice_and_ionice_stand_in() -> None:
    limits = Limits(memory_max=64 * 2**20, tasks_max=10, cpu_weight=50, io_weight=400)
    limited = prepare(limits, ["true"], "j", "r1", NO_MANAGER)
    assert limited.argv == ["/usr/bin/ionice", "-c", "2", "-n", "2", "--", "true"]
    assert (limited.in_scope, limited.nice, limited.data_max) == (False, 3, 64 * 2**20)
    # RLIMIT_NPROC counts every process of the user: this run may add tasks_max to them.
    assert limited.nproc_max is not None
    assert limited.nproc_max - 10 in range(user_processes(os.geteuid()) - 50, 10**6)
    as_root = prepare(limits, ["true"], "j", "r1", replace(NO_MANAGER, root=True))
    assert as_root.nproc_max is None  # the kernel would ignore it: validate says so


def test_a_scope_run_is_judged_by_its_cgroups_counters(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text("0::/user.slice/watchkeeper-j-r1.scope\n")
    scope = root / "user.slice" / "watchkeeper-j-r1.scope"
    scope.mkdir(parents=True)
    assert scope_cgroup(42, proc, root) == scope
    assert scope_cgroup(43, proc, root) is None
    (scope / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    (scope / "pids.events").write_text("max 0\n")
    assert counter(scope, "memory.events", "oom_kill") == 1
    assert counter(scope, "pids.events", "max") == 0
    assert counter(None, "pids.events", "max") is None
    assert counter(scope, "io.events", "max") is None


def test_which_limit_a_failed_run_hit_and_how_sure_that_is() -> None:
    limits = Limits(memory_max=512 * 2**20, tasks_max=20)
    assert limit_hit(limits, Evidence(oom_kills=1)) == "memory_max 512MB exceeded"
    guessed = limit_hit(limits, Evidence(killed=True))
    assert guessed == "memory_max 512MB exceeded (killed by SIGKILL: likely the OOM killer)"
    assert limit_hit(limits, Evidence(oom_kills=0, forks_refused=0, killed=True)) is None
    assert limit_hit(limits, Evidence(forks_refused=2)) == "tasks_max 20 exceeded"
    # A counter that says no fork was refused outweighs words in the output.
    assert limit_hit(limits, Evidence(forks_refused=0, tail=b"sh: Cannot fork")) is None
    assert limit_hit(limits, Evidence(tail=b"sh: Cannot fork")) == "tasks_max 20 exceeded"
    assert limit_hit(Limits(nice=3), Evidence(tail=b"MemoryError", killed=True)) is None


def test_weights_map_to_nice_and_ionice_levels() -> None:
    assert [weight_as_nice(w) for w in (100, 50, 200, 1, 10_000)] == [0, 3, -3, 19, -20]
    assert [weight_as_ionice(w) for w in (100, 50, 200, 1, 10_000)] == [4, 5, 3, 7, 0]


def test_a_negative_nice_without_the_privilege_is_refused_before_the_start() -> None:
    host = replace(NO_MANAGER, lower_nice=False)
    with pytest.raises(LimitError, match="nice -5 needs CAP_SYS_NICE"):
        prepare(Limits(nice=-5), ["true"], "j", "r1", host)
    with pytest.raises(LimitError, match=r"cpu_weight 1000 \(nice -10\) needs CAP_SYS_NICE"):
        prepare(Limits(cpu_weight=1000), ["true"], "j", "r1", host)


def test_a_user_manager_is_what_systemctl_says_is_running(tmp_path: Path) -> None:
    for said, answers in (("running", True), ("degraded", True), ("offline", False)):
        systemctl = tmp_path / f"systemctl-{said}"
        systemctl.write_text(f"#!/bin/sh\necho {said}\nexit 1\n")
        systemctl.chmod(0o755)
        assert user_manager(str(systemctl)) is answers
    assert user_manager(None) is False
    assert user_manager(str(tmp_path / "missing")) is False


def test_this_host_uses_systemd_run_only_when_a_user_manager_answers() -> None:
    if shutil.which("systemd-run") is None:
        assert HOST.systemd_run is None
    else:
        assert (HOST.systemd_run is not None) == user_manager(shutil.which("systemctl"))


# --- real runs under real limits -----------------------------------------------------------


async def test_a_child_allocating_past_memory_max_fails_naming_the_limit(tmp_path: Path):
    script = "b = bytearray(600 * 2**20); print('allocated')"
    outcome, output, _ = await run(
        tmp_path, [sys.executable, "-c", script], Limits(memory_max=64 * 2**20), timeout=30
    )
    assert outcome.status == "failure", output
    assert outcome.error is not None and outcome.error.startswith("memory_max 64MB exceeded")
    assert b"allocated" not in output


async def test_under_memory_max_a_run_succeeds(tmp_path: Path) -> None:
    script = "b = bytearray(8 * 2**20); print('allocated')"
    outcome, output, _ = await run(
        tmp_path, [sys.executable, "-c", script], Limits(memory_max=256 * 2**20)
    )
    assert (outcome.status, outcome.error) == ("success", None)
    assert b"allocated" in output


async def test_a_quick_run_is_judged_by_what_it_wrote_as_it_exited(tmp_path: Path) -> None:
    # Its output is read after the leader's exit: the judgement waits for it.
    script = "echo 'tool: Cannot allocate memory' >&2; exit 1"
    outcome, _, _ = await run(tmp_path, ["sh", "-c", script], Limits(memory_max=64 * 2**20))
    assert (outcome.status, outcome.error) == ("failure", "memory_max 64MB exceeded")


NOBODY = 65534
NPROC_PROBE = """
import asyncio, os, sys
from pathlib import Path
from watchkeeper.core.limits import Limits
from watchkeeper.core.limits_host import host_limits
from watchkeeper.core.runner import Run, RunSpec
assert host_limits().pids_root is None and not host_limits().root, host_limits()
async def main():
    run = Run(RunSpec("r1", ["sh", "-c", sys.argv[1]], dict(os.environ), Path("/"), timeout=30,
              kill_grace=1, job="j", limits=Limits(tasks_max=10)), lambda data: None)
    print((await run.done).error)
asyncio.run(main())
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become nobody"
)
def test_as_a_plain_user_rlimit_nproc_stops_a_fork_bomb() -> None:
    # The keeper as a user with no pids cgroup to write: RLIMIT_NPROC over its count.
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-c",
            NPROC_PROBE,
            BOMB,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tasks_max 10 exceeded"


async def test_a_failure_that_is_no_limit_keeps_its_own_error(tmp_path: Path) -> None:
    outcome, _, _ = await run(tmp_path, ["sh", "-c", "exit 3"], Limits(memory_max=64 * 2**20))
    assert (outcome.status, outcome.error) == ("failure", "exit code 3")


needs_tasks = pytest.mark.skipif(
    HOST.systemd_run is None and HOST.pids_root is None and HOST.root,
    reason="tasks_max cannot be enforced here (root, no user manager, no pids cgroup)",
)

# A bounded fork bomb: at most 200 sleeps (each ended with the run's group), never more.
BOMB = "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait"


@needs_tasks
async def test_a_fork_bomb_is_stopped_by_tasks_max(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome, output, handle = await run(
        tmp_path, ["sh", "-c", BOMB], Limits(tasks_max=20), timeout=30, kill_grace=1
    )
    assert outcome.status == "failure", output
    assert outcome.error == "tasks_max 20 exceeded"
    assert time.monotonic() - started < 20
    assert wait_for(lambda: not alive(handle.pid))
    limited = handle._limited
    assert limited is not None
    await until(lambda: limited.cgroup is None or not limited.cgroup.exists())


@pytest.mark.skipif(HOST.pids_root is None, reason="no pids cgroup of the keeper's here")
async def test_a_run_that_leaves_its_group_still_ends_with_its_cgroup(tmp_path: Path):
    pid_file = tmp_path / "escaped.pid"
    # Out of the run's group and output: only its cgroup still holds it.
    script = (
        f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 30' >/dev/null 2>&1 & "
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done"
    )
    outcome, _, handle = await run(tmp_path, ["sh", "-c", script], Limits(tasks_max=10))
    assert outcome.status == "success"
    escaped = int(pid_file.read_text())
    assert wait_for(lambda: not alive(escaped) or _zombie(escaped))
    assert handle._limited is not None and handle._limited.cgroup is not None
    await until(lambda: not handle._limited.cgroup.exists())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_a_limited_run_past_its_timeout_loses_its_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    outcome, _, _ = await run(
        tmp_path,
        ["sh", "-c", script],
        Limits(memory_max=64 * 2**20, tasks_max=10, nice=2),
        timeout=0.5,
        kill_grace=1,
    )
    assert outcome.status == "timeout"
    child = int(pid_file.read_text())
    assert wait_for(lambda: not alive(child) or _zombie(child))


def _nice_of(pid: int) -> int:
    # Field 19 of /proc/PID/stat, counted after the command's closing parenthesis.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def test_nice_and_cpu_weight_set_the_childs_nice_level(tmp_path: Path) -> None:
    for limits, expected in ((Limits(nice=7), 7), (Limits(cpu_weight=50), 3)):
        if HOST.systemd_run is not None and limits.nice is None:
            continue  # CPUWeight= of the scope there, no nice level
        output = bytearray()
        handle = Run(
            RunSpec("r1", ["sleep", "30"], dict(os.environ), tmp_path, limits=limits, job="j"),
            output.extend,
        )
        try:
            seen = _nice_of(handle.pid)
            assert seen == expected + os.getpriority(os.PRIO_PROCESS, 0), limits
        finally:
            handle.stop("cancelled", "test over")
            await handle.done


@pytest.mark.skipif(HOST.systemd_run is not None or HOST.ionice is None, reason="no ionice path")
async def test_io_weight_sets_an_ionice_level_without_a_scope(tmp_path: Path) -> None:
    outcome, output, _ = await run(tmp_path, ["sh", "-c", "ionice -p $$"], Limits(io_weight=400))
    assert outcome.status == "success", output
    assert output.strip() == b"best-effort: prio 2"


# --- through the CLI -----------------------------------------------------------------------


def test_validate_says_how_this_host_enforces_each_limit(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = "true"\nmemory_max = "64MB"\nnice = 3\n')
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("limits on this host (")
    table = enforcement(HOST)
    for key in ("memory_max", "tasks_max", "cpu_weight", "nice", "io_weight"):
        mark = "*" if key in ("memory_max", "nice") else " "
        assert f" {mark} {key:<10} {table[key]}" in lines, key
    if HOST.systemd_run is None:
        assert "RLIMIT_DATA" in done.stdout and "MemoryMax" not in done.stdout
    plain = make_vault('[jobs.a]\ncommand = "true"\n', name="plain")
    quiet = run_cli("validate", "--vault", str(plain))
    assert quiet.stdout.splitlines() == [f"{plain / 'watchkeeper.toml'}: ok, 1 job(s)"]
    asked = run_cli("validate", "--limits", "--vault", str(plain))
    assert asked.returncode == 0 and "limits on this host" in asked.stdout
    assert "*" not in asked.stdout


def test_the_enforcement_table_is_honest_about_what_a_host_lacks() -> None:
    bare = HostLimits(None, None, None, root=True, lower_nice=True)
    table = enforcement(bare)
    assert table["tasks_max"].startswith("NOT enforced") and "root" in table["tasks_max"]
    assert table["io_weight"].startswith("NOT enforced")
    assert "RLIMIT_NPROC" in enforcement(replace(bare, root=False))["tasks_max"]
    assert "TasksMax=" in enforcement(WITH_MANAGER)["tasks_max"]
    assert "below 0 refused" in enforcement(replace(bare, lower_nice=False))["nice"]


@needs_tasks
def test_a_run_through_the_cli_records_the_limit_that_ended_it(make_vault) -> None:
    vault = make_vault(f'[jobs.bomb]\ncommand = "{BOMB}"\ntasks_max = 15\ntimeout = "30s"\n')
    done = run_cli("run", "bomb", "--vault", str(vault))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tasks_max 15 exceeded" in done.stdout
    [history] = (vault / "Logs" / "history").glob("*.jsonl")
    record = json.loads(history.read_text().splitlines()[-1])
    assert (record["status"], record["error"]) == ("failure", "tasks_max 15 exceeded")


async def test_a_keeper_says_how_it_limits_and_records_the_limit_a_run_hit(make_vault) -> None:
    from conftest import finish, keeper_log, started_keeper

    vault = make_vault(
        f"""
        [jobs.hungry]
        command = ["{sys.executable}", "-c", "b = bytearray(600 * 2**20)"]
        memory_max = "64MB"
        nice = 4

        [jobs.plain]
        command = "true"
        """
    )
    keeper = await started_keeper(vault)
    serving = asyncio.create_task(keeper.serve())
    try:
        _, finished = keeper.run_and_watch("hungry")
        record = await asyncio.wait_for(finished, 30)
    finally:
        await finish(keeper, serving)
    assert record["status"] == "failure"
    assert record["error"].startswith("memory_max 64MB exceeded")
    said = [line for line in keeper_log(vault).splitlines() if "limits: " in line]
    table = enforcement(HOST)
    assert len(said) == 1, said
    assert f"memory_max by {table['memory_max']}; nice by {table['nice']}" in said[0]
    job_log = (vault / "Logs" / "jobs" / "hungry.log").read_text()
    assert "memory_max 64MB exceeded" in job_log


def test_describe_shows_a_jobs_limits(make_vault) -> None:
    text = '[jobs.a]\ncommand = "true"\nmemory_max = "1.5GB"\ntasks_max = 64\nnice = 5\n'
    vault = make_vault(text)
    done = run_cli("describe", "a", "--vault", str(vault))
    assert done.returncode == 0, done.stderr
    row = r"^ +limits +memory_max 1\.5GB, tasks_max 64, nice 5$"
    assert re.search(row, done.stdout, re.MULTILINE), done.stdout
    as_json = json.loads(run_cli("describe", "a", "--json", "--vault", str(vault)).stdout)
    assert as_json["config"]["memory_max"] == 1536 * 2**20
    assert as_json["config"]["io_weight"] is None
