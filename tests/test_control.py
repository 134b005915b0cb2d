"""The control socket against a real `watchkeeper --daemon`: every op round trip, the
socket file's life (0600, stale ones replaced, removed on exit, long vault paths), fuzzed
requests that must never hurt the keeper, and subscribers (fan-out, slow ones dropped or
resynchronised while the keeper keeps firing on time)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, final_records, keeper_log, lock_record, pid_alive, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core import control_client
from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import (
    HISTORY_LIMIT,
    MAX_REQUEST,
    OPS,
    ControlFailed,
    ControlUnavailable,
    find_socket,
)
from watchkeeper.core.events import EVENT_KINDS
from watchkeeper.core.history import STATUSES
from watchkeeper.core.state import load_state
from watchkeeper.core.vault import ensure_layout

# ---- daemons ------------------------------------------------------------------------------


def new_vault(folder: Path, config: str) -> Path:
    vault = folder / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(config))
    return vault


OPS_CONFIG = """
    [keeper]
    max_parallel = 8

    [jobs.tick]
    command = ["true"]
    every = "200ms"

    [jobs.tock]
    command = ["true"]
    every = "200ms"

    [jobs.ok]
    command = ["true"]

    [jobs.bad]
    command = ["false"]

    [jobs.slow]
    command = ["sleep", "60"]

    [jobs.paged]
    command = ["true"]

    [jobs.echo]
    command = ["sh", "-c", "echo hello-from-echo"]
    """


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """One keeper for the op round trips; each test uses jobs of its own."""
    folder = tmp_path_factory.mktemp("ops")
    started = Daemons(folder)
    vault = new_vault(folder, OPS_CONFIG)
    process = started.start(vault)
    yield vault, process
    started.stop_all()


def job_view(vault: Path, name: str) -> dict[str, Any]:
    jobs = control_client.request(vault, "jobs")["jobs"]
    return next(job for job in jobs if job["name"] == name)


def runs_of(vault: Path, job: str) -> list[dict[str, Any]]:
    """Final (or still running) records of `job`, oldest start first."""
    found = [record for record in final_records(vault).values() if record["taskId"] == job]
    return sorted(found, key=lambda record: record["startedAt"])


def started_after(vault: Path, job: str, moment: datetime) -> list[dict[str, Any]]:
    return [
        record
        for record in runs_of(vault, job)
        if datetime.fromisoformat(record["startedAt"]) > moment
    ]


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


# ---- malformed requests ---------------------------------------------------------------------


def exchange(path: Path, payload: bytes, timeout: float = 10.0) -> tuple[list[dict], bool]:
    """Send raw bytes, end our side, read every answer line. Returns the answers and
    whether the stream turned into a subscription (then we stop reading)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fsencode(path))
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # an oversized request: the keeper answered and hung up mid-send
        buffer = b""
        answers: list[dict] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""  # it closed with our unread bytes queued: after its answers
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                answer = json.loads(line)
                answers.append(answer)
                if "snapshot" in answer:
                    return answers, True
            if not chunk:
                assert buffer == b"", buffer
                return answers, False


def assert_clean(answer: Any) -> None:
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
    if not answer["ok"]:
        assert isinstance(answer["error"], str), answer
        assert "internal error" not in answer["error"], answer


def socket_of(vault: Path) -> Path:
    return Path(lock_record(vault)["socket"])


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json\n", "not JSON"),
        (b"\xff\xfe\x00garbage\n", "not JSON"),
        (b"[1, 2]\n", 'a request is a JSON object like {"op": "status"}'),
        (b'"status"\n', "a request is a JSON object"),
        (b'{"no": "op"}\n', "request needs op, one of: status, jobs"),
        (b'{"op": 5}\n', "request needs op"),
        (b'{"op": "fly"}\n', "unknown op 'fly'; ops: status"),
        (b'{"op": "status"}', "request ended without a newline"),
        (b"x" * (MAX_REQUEST + 1) + b"\n", f"request longer than {MAX_REQUEST} bytes"),
        (b"x" * (MAX_REQUEST * 4), f"request longer than {MAX_REQUEST} bytes"),
        (b"[" * 50_000 + b"\n", "not JSON"),
    ],
    ids=[
        "text",
        "binary",
        "array",
        "string",
        "no-op",
        "op-not-string",
        "unknown-op",
        "eof-mid-line",
        "oversize-line",
        "oversize-no-newline",
        "deep-nesting",
    ],
)
def test_a_malformed_request_gets_an_error_answer(ops, payload: bytes, error: str) -> None:
    vault, process = ops
    answers, subscribed = exchange(socket_of(vault), payload)
    assert not subscribed and len(answers) == 1, answers
    assert answers[0]["ok"] is False and error in answers[0]["error"], answers
    assert_clean(answers[0])
    assert control_client.request(vault, "status")["status"]["pid"] == process.pid


def test_a_request_of_exactly_the_limit_is_read(ops) -> None:
    vault, _ = ops
    request = b'{"op": "status", "pad": "' + b"x" * MAX_REQUEST
    request = request[: MAX_REQUEST - 2] + b'"}' + b"\n"
    assert len(request) == MAX_REQUEST + 1  # the newline is not counted
    answers, _ = exchange(socket_of(vault), request)
    assert [answer["ok"] for answer in answers] == [True]


def test_errors_keep_the_connection_and_answer_in_order(ops) -> None:
    vault, process = ops
    answers, _ = exchange(
        socket_of(vault), b'nope\n\n  \n{"op": "status"}\n[]\n{"op": "jobs"}\n{"op"'
    )
    assert [answer["ok"] for answer in answers] == [False, True, False, True, False]
    assert answers[1]["status"]["pid"] == process.pid
    assert answers[4]["error"] == "request ended without a newline"


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "history", "job": "\ud800"},
        {"op": "history", "since": "0001-01-01T00:00:00+00:00"},
        {"op": "history", "since": "9999-12-31T23:59:59-23:59"},
    ],
    ids=["lone-surrogate-job", "since-year-1", "since-past-year-9999"],
)
def test_odd_history_arguments_are_refused_not_internal_errors(ops, request_: dict) -> None:
    vault, _ = ops
    # json.dumps escapes the surrogate as \ud800: valid JSON that decodes to an unencodable str.
    answers, _ = exchange(socket_of(vault), json.dumps(request_).encode() + b"\n")
    assert len(answers) == 1 and answers[0]["ok"] is False
    assert_clean(answers[0])


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


# ---- fuzzing --------------------------------------------------------------------------------


def _offset(delta: timedelta) -> timezone:
    return timezone(delta)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
OFFSETS: st.SearchStrategy[Any] = st.none() | st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
).map(_offset)
# The calendar's edges get their share: arithmetic on them overflows.
TIMES = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.datetimes(max_value=datetime(1, 1, 2), timezones=OFFSETS),
    st.datetimes(min_value=datetime(9999, 12, 30), timezones=OFFSETS),
).map(datetime.isoformat)
# JSON's \uXXXX escapes carry lone surrogates that no UTF-8 file or log line can hold.
ODD_TEXT = st.text(st.characters(categories=["Cs", "Ll", "Nd", "Zs"]), max_size=6)
# Each argument mostly of its own type, so requests get past the first check into the op.
ARGS = {
    "job": st.sampled_from(["ok", "bad", "nope", ""]) | ODD_TEXT | JSON,
    "limit": st.integers(-1, HISTORY_LIMIT + 1) | st.integers(1, 5) | JSON,
    "offset": st.integers(-1, 20) | JSON,
    "since": TIMES | JSON,
    "status": st.sampled_from([*STATUSES, "weird"]) | ODD_TEXT | JSON,
    "run_id": ODD_TEXT | JSON,
    "wait": st.booleans() | JSON,
    "missed": st.booleans() | JSON,
    "preview": st.booleans() | JSON,
    "kinds": st.lists(st.sampled_from([*EVENT_KINDS, "nope"]) | ODD_TEXT, max_size=3) | JSON,
}
# Known ops with any mix of arguments (the deep paths), and requests of any shape.
REQUESTS = st.builds(
    lambda op, args: {"op": op, **args},
    st.sampled_from([*OPS, "history", "history"]),  # the op with the most arguments
    st.fixed_dictionaries({}, optional=ARGS),
).map(lambda request: json.dumps(request).encode())
ODD_REQUESTS = st.builds(
    lambda op, args: {"op": op, **args},
    st.text(max_size=8) | JSON,
    st.dictionaries(st.text(max_size=6), JSON, max_size=3),
).map(lambda request: json.dumps(request).encode())
# Weighted by hand: st.one_of would merge the repeats into one branch.
LINES = st.sampled_from(
    [
        *[REQUESTS] * 6,
        REQUESTS.map(lambda line: line[: len(line) // 2]),  # cut short
        ODD_REQUESTS,
        st.binary(max_size=300),
        st.text(max_size=120).map(str.encode),
        JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.integers(1, 60_000).map(lambda depth: b"[" * depth),
        st.integers(MAX_REQUEST - 2, MAX_REQUEST * 3).map(lambda size: b"y" * size),
    ]
).flatmap(lambda lines: lines)
PAYLOADS = st.tuples(st.lists(LINES, min_size=1, max_size=3), st.booleans()).map(
    lambda pair: b"\n".join(pair[0]) + (b"\n" if pair[1] else b"")
)


def expected_answers(payload: bytes) -> tuple[int, bool]:
    """How many answers the keeper owes for `payload`, and whether it then hangs up for
    an oversized line (everything after it is lost, by design)."""
    *lines, tail = payload.split(b"\n")
    count = 0
    for line in lines:
        if len(line) > MAX_REQUEST:
            return count + 1, True
        count += bool(line.strip())
    if len(tail) > MAX_REQUEST:
        return count + 1, True
    return count + bool(tail.strip()), False


def test_fuzzed_requests_get_clean_answers_and_never_hurt_the_keeper(
    daemons: Daemons, tmp_path: Path
) -> None:
    vault = new_vault(tmp_path, '[jobs.ok]\ncommand = ["true"]\n[jobs.bad]\ncommand = ["false"]\n')
    process = daemons.start(vault)
    path = socket_of(vault)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=PAYLOADS)
    def exchange_one(payload: bytes) -> None:
        answers, subscribed = exchange(path, payload)
        for answer in answers:
            assert_clean(answer)
        owed, hung_up = expected_answers(payload)
        if subscribed:
            assert len(answers) <= owed
        else:
            assert len(answers) == owed, (answers, payload[:200])
            if hung_up:
                assert answers[-1]["error"] == f"request longer than {MAX_REQUEST} bytes"
        assert control_client.request(vault, "status")["status"]["pid"] == process.pid

    exchange_one()
    assert pid_alive(process.pid)
    answer = control_client.request(vault, "run", job="ok", wait=True)
    assert answer["record"]["status"] == "success"
    # An op raising anything but a RequestError is logged as "control: <Error>: ...".
    log = keeper_log(vault).splitlines()
    assert [line for line in log if " ERROR " in line and "control" in line] == []


def test_a_subscriber_that_hangs_up_is_not_an_error(ops) -> None:
    vault, process = ops

    def connections() -> int:
        sockets = 0
        for fd in Path(f"/proc/{process.pid}/fd").iterdir():
            # Runs open and close descriptors meanwhile: one listed may be gone already.
            with contextlib.suppress(FileNotFoundError):
                sockets += os.readlink(fd).startswith("socket:")
        return sockets

    before = connections()
    connection, _ = control_client.subscribe(vault)
    connection.close()
    # Events for the gone subscriber: the keeper finds it gone when it writes them.
    control_client.request(vault, "run", job="echo", wait=True)
    wait_for(lambda: connections() <= before)
    log = keeper_log(vault)
    assert "control: ConnectionResetError" not in log and "control: BrokenPipeError" not in log


# ---- subscribers --------------------------------------------------------------------------


def read_until(
    connection: Connection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Events until `done(events)` holds."""
    connection.settimeout(timeout)
    events: list[dict[str, Any]] = []
    while not done(events):
        events.append(connection.read())
    return events


def test_a_subscriber_sees_a_run_start_print_and_finish(ops) -> None:
    vault, process = ops
    connection, snapshot = control_client.subscribe(vault)
    with connection:
        assert snapshot["pid"] == process.pid and snapshot["jobs"]
        run_id = control_client.request(vault, "run", job="echo")["run_id"]

        def finished(events: list[dict]) -> bool:
            return any(e["event"] == "run_finished" and e["data"]["id"] == run_id for e in events)

        events = read_until(connection, finished)
    mine = [
        e
        for e in events
        if e["data"].get("id") == run_id
        or (e["event"] == "log_line" and e["data"].get("source") == "echo")
    ]
    assert [e["event"] for e in mine] == ["run_started", "log_line", "run_finished"]
    started, line, ended = (e["data"] for e in mine)
    assert started["taskId"] == "echo" and started["trigger"] == "manual" and started["pid"] > 0
    assert line["line"] == "hello-from-echo"
    assert ended["status"] == "success"


def test_kinds_filter_what_a_subscriber_gets(ops) -> None:
    vault, _ = ops
    connection, _ = control_client.subscribe(vault, kinds=["run_finished"])
    with connection:
        run_id = control_client.request(vault, "run", job="echo")["run_id"]
        events = read_until(connection, lambda e: any(x["data"].get("id") == run_id for x in e))
    assert {event["event"] for event in events} == {"run_finished"}
    with pytest.raises(ControlFailed, match="kinds must be a list"):
        control_client.subscribe(vault, kinds="run_started")  # type: ignore[arg-type]
    with pytest.raises(ControlFailed, match="unknown event kind\\(s\\) run_begun; kinds: "):
        control_client.subscribe(vault, kinds=["run_begun"])


def test_ten_subscribers_each_see_every_run_event(ops) -> None:
    vault, _ = ops
    subscribers = [
        control_client.subscribe(vault, kinds=["run_started", "run_finished"])[0] for _ in range(10)
    ]
    try:
        ids = [
            control_client.request(vault, "run", job="ok", wait=True)["run_id"] for _ in range(5)
        ]

        def all_finished(events: list[dict]) -> bool:
            done = {e["data"]["id"] for e in events if e["event"] == "run_finished"}
            return done.issuperset(ids)

        for connection in subscribers:
            events = read_until(connection, all_finished)
            for run_id in ids:
                kinds = [e["event"] for e in events if e["data"]["id"] == run_id]
                assert kinds == ["run_started", "run_finished"], (run_id, kinds)
    finally:
        for connection in subscribers:
            connection.close()


NOISY = 200  # lines a noisy run prints


def test_a_stalled_subscriber_is_dropped_while_the_keeper_keeps_firing(
    daemons: Daemons, tmp_path: Path
) -> None:
    line = "noise %g " + "x" * 100
    vault = new_vault(
        tmp_path,
        f"""
        [keeper]
        max_parallel = 8
        [jobs.noisy]
        command = ["seq", "-f", "{line}", "1", "{NOISY}"]
        every = "50ms"
        [jobs.beat]
        command = ["true"]
        every = "100ms"
        """,
    )
    daemons.start(vault)
    t0 = datetime.now(UTC)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as deaf,
    ):
        stalled.connect(os.fsencode(socket_of(vault)))
        stalled.sendall(b'{"op": "subscribe"}\n')  # and never reads a byte
        # Asks, and never reads the answers: megabytes of status, far past any buffer.
        deaf.connect(os.fsencode(socket_of(vault)))
        deaf.sendall(b'{"op": "status"}\n' * 3000)
        late, _ = control_client.subscribe(vault)  # reads once, far behind
        with late:
            # Past the late reader's backlog (5000 events) plus what its socket buffers hold.
            wait_for(lambda: len(started_after(vault, "noisy", t0)) * NOISY >= 12_000, timeout=20)
            late.settimeout(10)
            seen: list[dict[str, Any]] = []
            try:
                while not any(event["event"] == "resync" for event in seen):
                    seen.append(late.read())
            except ConnectionError:
                pass  # dropped itself: on a box too slow to read it in time
            resyncs = [event["data"] for event in seen if event["event"] == "resync"]

            wait_for(lambda: "control: dropped a subscriber" in keeper_log(vault), timeout=20)
            t1 = datetime.now(UTC)
            if resyncs:
                assert resyncs[0]["dropped"] > 0 and resyncs[0]["snapshot"]["jobs"]
                late.settimeout(10)
                assert late.read()["event"]  # still served after the resync
            else:
                assert keeper_log(vault).count("control: dropped a subscriber") >= 2

            # Both stalled connections are closed (after STALL_LIMIT): each sees the hang-up
            # without having to read what was queued for it first.
            for client in (stalled, deaf):
                poller = select.poll()
                poller.register(client, select.POLLHUP)
                assert poller.poll(3000), "the keeper kept a stalled connection open"

    # Meanwhile the keeper kept its 100 ms beat (half the slots at the very least).
    window = (t1 - t0).total_seconds()
    beats = [
        run
        for run in started_after(vault, "beat", t0)
        if datetime.fromisoformat(run["startedAt"]) <= t1
    ]
    assert len(beats) >= 0.5 * window / 0.1, (len(beats), window)
    assert control_client.request(vault, "status")["status"]["state"] == "RUNNING"
