"""The control socket against a real `watchkeeper --daemon`: every op round trip, and the
socket file's life (0600, stale ones replaced, removed on exit, long vault paths)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, final_records, keeper_log, lock_record, wait_for
from control_kit import job_view, new_vault, ops_keeper, runs_of, started_after

from watchkeeper.core import control_client
from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import ControlFailed, ControlUnavailable, find_socket
from watchkeeper.core.state import load_state


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """One keeper for the op round trips; each test uses jobs of its own."""
    yield from ops_keeper(tmp_path_factory.mktemp("ops"))


# ---- op round trips -------------------------------------------------------------------------


def test_status_and_jobs_describe_the_running_keeper(ops) -> None:
    vault, process = ops
    status = control_client.request(vault, "status")["status"]
    assert (status["pid"], status["state"], status["paused"]) == (process.pid, "RUNNING", False)
    assert status["vault"] == str(vault.resolve())
    names = ["tick", "tock", "ok", "bad", "slow", "paged", "echo"]
    assert [job["name"] for job in status["jobs"]] == names
    jobs = {job["name"]: job for job in control_client.request(vault, "jobs")["jobs"]}
    assert list(jobs) == names
    assert jobs["tick"]["trigger"] == "every 200ms" and jobs["tick"]["next_run"] is not None
    assert jobs["ok"]["next_run"] is None and jobs["ok"]["paused"] is False


def test_one_connection_carries_many_requests_and_survives_bad_ones(ops) -> None:
    vault, process = ops
    with Connection(vault) as connection:
        for _ in range(3):
            assert connection.request("status")["status"]["pid"] == process.pid
        with pytest.raises(ControlFailed, match="unknown op 'fly'"):
            connection.request("fly")
        assert connection.request("jobs")["ok"] is True


def test_run_wait_answers_the_final_record(ops) -> None:
    vault, _ = ops
    ok = control_client.request(vault, "run", job="ok", wait=True)
    assert ok["record"]["id"] == ok["run_id"]
    assert (ok["record"]["status"], ok["record"]["trigger"]) == ("success", "manual")
    bad = control_client.request(vault, "run", job="bad", wait=True)
    assert (bad["record"]["status"], bad["record"]["exitCode"]) == ("failure", 1)
    records = final_records(vault)
    assert records[ok["run_id"]]["status"] == "success"
    assert records[bad["run_id"]]["status"] == "failure"


def test_run_without_wait_answers_the_id_at_once(ops) -> None:
    vault, _ = ops
    answer = control_client.request(vault, "run", job="ok")
    assert set(answer) == {"ok", "run_id"}
    wait_for(lambda: final_records(vault).get(answer["run_id"], {}).get("status") == "success")


def test_run_of_an_unknown_job_is_refused_naming_it(ops) -> None:
    vault, _ = ops
    with pytest.raises(ControlFailed, match=r"no job 'no-such-job' in .*jobs: tick, tock"):
        control_client.request(vault, "run", job="no-such-job")
    with pytest.raises(ControlFailed, match="run needs job"):
        control_client.request(vault, "run")


def test_cancel_ends_a_running_run_and_its_waiter_hears_cancelled(ops) -> None:
    vault, _ = ops
    waited: dict[str, Any] = {}

    def run_and_wait() -> None:
        waited.update(control_client.request(vault, "run", timeout=30, job="slow", wait=True))

    waiter = threading.Thread(target=run_and_wait)
    waiter.start()
    try:
        wait_for(lambda: job_view(vault, "slow")["running"])
        run_id = job_view(vault, "slow")["running"][0]["id"]
        wait_for(lambda: job_view(vault, "slow")["running"][0]["pid"])
        cancelled = control_client.request(vault, "cancel", run_id=run_id)
        assert cancelled == {"ok": True, "cancelled": run_id}
    finally:
        waiter.join(timeout=20)
    assert waited["run_id"] == run_id and waited["record"]["status"] == "cancelled"
    assert final_records(vault)[run_id]["status"] == "cancelled"
    assert job_view(vault, "slow")["running"] == []


def test_cancel_of_an_unknown_run_answers_ok_false(ops) -> None:
    vault, _ = ops
    with pytest.raises(ControlFailed, match="no run 1-nothing in flight"):
        control_client.request(vault, "cancel", run_id="1-nothing")
    with pytest.raises(ControlFailed, match="cancel needs run_id"):
        control_client.request(vault, "cancel", run_id=7)


def test_history_pages_newest_first_with_next_offset(ops) -> None:
    vault, _ = ops
    ids = [control_client.request(vault, "run", job="paged", wait=True)["run_id"] for _ in range(5)]
    pages: list[list[str]] = []
    offsets: list[int | None] = []
    offset: int | None = 0
    with Connection(vault) as connection:
        while offset is not None:
            answer = connection.request("history", job="paged", limit=2, offset=offset)
            pages.append([run["id"] for run in answer["runs"]])
            offset = answer["next_offset"]
            offsets.append(offset)
    newest_first = ids[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    assert offsets == [2, 4, None]


def test_history_filters_and_refuses_bad_arguments(ops) -> None:
    vault, _ = ops
    before = datetime.now(UTC)
    failed = control_client.request(vault, "run", job="bad", wait=True)["run_id"]
    control_client.request(vault, "run", job="ok", wait=True)
    answer = control_client.request(
        vault, "history", status="failure", since=before.isoformat(), limit=10
    )
    assert [run["id"] for run in answer["runs"]] == [failed]
    assert answer["next_offset"] is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "history limit must be 1..1000"),
        ({"limit": True}, "history limit must be 1..1000"),
        ({"offset": 9999, "limit": 2}, "offset \\+ limit must stay within"),
        ({"status": "weird"}, "unknown status 'weird'"),
        ({"since": "2024-01-01T00:00:00"}, "since needs a time zone offset"),
        ({"since": "yesterday"}, "history: Invalid isoformat"),
        ({"job": 3}, "history job must be a string"),
        ({"since": 5}, "history since must be a string"),
    ]
    for args, message in cases:
        with pytest.raises(ControlFailed, match=message):
            control_client.request(vault, "history", **args)


def test_pause_is_saved_shown_and_holds_the_slots_then_resume_without_missed(ops) -> None:
    vault, _ = ops
    wait_for(lambda: runs_of(vault, "tick"))
    answer = control_client.request(vault, "pause", job="tick")
    paused_at = datetime.now(UTC)
    assert (answer["paused"], answer["state"]) == ("tick", "RUNNING")
    assert load_state(vault).paused_jobs == {"tick"}
    assert job_view(vault, "tick")["paused"] is True
    # Three slots pass unrun (200 ms apart): the keeper counts them, starts nothing.
    wait_for(lambda: job_view(vault, "tick")["missed_while_paused"] >= 3, timeout=5)
    assert started_after(vault, "tick", paused_at) == []

    resumed = control_client.request(vault, "resume", job="tick", missed=False)
    resumed_at = datetime.now(UTC)
    missed = [run for run in resumed["plan"]["runs"] if run["kind"] == "missed"]
    assert len(missed) == 1 and missed[0]["optional"] is True
    assert load_state(vault).paused_jobs == set()
    assert job_view(vault, "tick")["paused"] is False
    # A catch-up would have been submitted inside the resume, before the next slot's run.
    wait_for(lambda: started_after(vault, "tick", resumed_at), timeout=5)
    assert [run["trigger"] for run in started_after(vault, "tick", paused_at)] == ["schedule"]
    assert "slot(s) missed while paused left out" in keeper_log(vault)


def test_resume_preview_changes_nothing_and_lists_the_catch_up(ops) -> None:
    vault, _ = ops
    control_client.request(vault, "pause", job="tock")
    paused_at = datetime.now(UTC)
    wait_for(lambda: job_view(vault, "tock")["missed_while_paused"] >= 2, timeout=5)

    preview = control_client.request(vault, "resume", job="tock", preview=True)
    plan = preview["plan"]
    assert (plan["target"], plan["waking"], plan["still_paused"]) == ("tock", ["tock"], [])
    [run] = plan["runs"]
    assert (run["job"], run["kind"], run["outcome"], run["optional"], run["fires"]) == (
        "tock",
        "missed",
        "starts",
        True,
        True,
    )
    assert "one catch-up run" in run["detail"]
    assert load_state(vault).paused_jobs == {"tock"}
    view = job_view(vault, "tock")
    assert view["paused"] is True and view["missed_while_paused"] >= 2

    control_client.request(vault, "resume", job="tock")
    wait_for(
        lambda: any(r["trigger"] == "catch_up" for r in started_after(vault, "tock", paused_at))
    )
    wait_for(
        lambda: any(r["trigger"] == "schedule" for r in started_after(vault, "tock", paused_at))
    )
    triggers = [run["trigger"] for run in started_after(vault, "tock", paused_at)]
    assert triggers.count("catch_up") == 1, triggers


def test_pause_everything_then_resume(ops) -> None:
    vault, _ = ops
    assert control_client.request(vault, "pause")["state"] == "PAUSED"
    status = control_client.request(vault, "status")["status"]
    assert (status["state"], status["paused"]) == ("PAUSED", True)
    assert load_state(vault).paused is True
    assert control_client.request(vault, "resume", missed=False)["state"] == "RUNNING"
    assert load_state(vault).paused is False


# ---- the socket file -----------------------------------------------------------------------


def test_socket_is_private_noted_in_the_lock_and_removed_after_sigterm(
    daemons: Daemons, tmp_path: Path
) -> None:
    vault = new_vault(tmp_path, '[jobs.idle]\ncommand = ["true"]\n')
    process = daemons.start(vault)
    path = vault / "Logs" / "watchkeeper.sock"
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert lock_record(vault)["socket"] == str(path.resolve())
    assert find_socket(vault)[0] == path.resolve()
    assert control_client.request(vault, "status")["status"]["pid"] == process.pid
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not path.exists()
    assert not [entry for entry in path.parent.iterdir() if entry.is_socket()]  # nor a scratch
    with pytest.raises(ControlUnavailable, match="no keeper is running"):
        control_client.request(vault, "status")


def test_a_stale_file_at_the_socket_path_is_replaced(daemons: Daemons, tmp_path: Path) -> None:
    vault = new_vault(tmp_path, '[jobs.idle]\ncommand = ["true"]\n')
    path = vault / "Logs" / "watchkeeper.sock"
    path.write_text("left over\n")
    process = daemons.start(vault)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert control_client.request(vault, "status")["status"]["pid"] == process.pid


def test_the_socket_a_killed_keeper_left_is_replaced_by_the_next(
    daemons: Daemons, tmp_path: Path
) -> None:
    vault = new_vault(tmp_path, '[jobs.idle]\ncommand = ["true"]\n')
    path = vault / "Logs" / "watchkeeper.sock"
    first = daemons.start(vault)
    first.kill()
    first.wait(timeout=10)
    assert stat.S_ISSOCK(path.lstat().st_mode)  # dead: nobody listens on it
    with pytest.raises(ControlUnavailable):
        control_client.request(vault, "status")
    second = daemons.start(vault)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert control_client.request(vault, "status")["status"]["pid"] == second.pid


def test_a_vault_path_too_long_for_a_socket_serves_from_the_runtime_dir(
    daemons: Daemons, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    vault = new_vault(deep, '[jobs.idle]\ncommand = ["true"]\n')
    assert len(os.fsencode(vault / "Logs" / "watchkeeper.sock")) > 107
    # Short, as /run/user/UID is: pytest's own tmp paths leave little room in sun_path.
    runtime = Path(tempfile.mkdtemp(prefix="wk-run-"))
    try:
        process = daemons.start(vault, env={"XDG_RUNTIME_DIR": str(runtime)})
        [path] = runtime.glob("watchkeeper-*.sock")
        assert lock_record(vault)["socket"] == str(path)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert not (vault / "Logs" / "watchkeeper.sock").exists()
        # The client finds it through the lock record, whatever its own XDG_RUNTIME_DIR says.
        assert control_client.request(vault, "status")["status"]["pid"] == process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert list(runtime.iterdir()) == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_a_socket_path_of_exactly_the_limit_stays_in_logs(daemons: Daemons, tmp_path: Path) -> None:
    tail = len(os.fsencode(tmp_path / "x" / "vault" / "Logs" / "watchkeeper.sock")) - 1
    folder = tmp_path / ("x" * (107 - tail))
    folder.mkdir()
    vault = new_vault(folder, '[jobs.idle]\ncommand = ["true"]\n')
    path = vault / "Logs" / "watchkeeper.sock"
    assert len(os.fsencode(path)) == 107
    process = daemons.start(vault)
    assert lock_record(vault)["socket"] == str(path)
    assert control_client.request(vault, "status")["status"]["pid"] == process.pid
