"""Requests the control socket must survive: malformed and oversized lines, odd arguments,
and fuzzed requests, each answered cleanly without hurting the keeper."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, keeper_log, pid_alive
from control_kit import new_vault, ops_keeper, socket_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.core import control_client
from watchkeeper.core.control_protocol import HISTORY_LIMIT, MAX_REQUEST, OPS
from watchkeeper.core.events import EVENT_KINDS
from watchkeeper.core.history import STATUSES


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """One keeper for the op round trips; each test uses jobs of its own."""
    yield from ops_keeper(tmp_path_factory.mktemp("ops"))


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
