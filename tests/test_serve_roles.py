"""A `read` session changes nothing, however it asks: every op outside the read
allowlist (run, run with params or --wait, pause, resume, cancel, approve, dismiss),
refused by the keeper on a connection that said `read` (a read token's console, and
serve's forwarding) and by serve's API for a read token. The table below must name
every op the control protocol has, so an op added later is tested here too."""
# ruff: noqa: F811  (the `servers` fixture is imported, then named by the tests)

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from serve_kit import (
    add_token,
    servers,  # noqa: F401  (the fixture; tests name it as a parameter)
)

from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import OPS, ControlFailed
from watchkeeper.core.control_roles import READ_OPS

JOBS = """\
[jobs.ok]
command = ["true"]
params = { day = "today" }
"""
ITEM = "Needs_Action/invoice.md"

# Each op that changes something, asked as an operator would (valid arguments), with
# every variant a read session might try.
CHANGES: dict[str, list[dict[str, Any]]] = {
    "run": [
        {"job": "ok"},
        {"job": "ok", "params": {"day": "2026-12-01"}},
        {"job": "ok", "wait": True},
    ],
    "pause": [{}, {"job": "ok"}],
    "resume": [{}, {"job": "ok"}, {"job": "ok", "preview": False}],
    "cancel": [{"run_id": "x"}],
    "approve": [{"path": ITEM}],
    "dismiss": [{"path": ITEM, "reason": "spam"}],
}


def test_every_op_is_either_read_or_in_the_refusal_table() -> None:
    assert set(OPS) - READ_OPS == set(CHANGES), "a new op needs its read-role refusal tested"


def _vault(make_vault: Any) -> Path:
    vault = make_vault(JOBS)
    (vault / ITEM).write_text("# invoice\n")
    return vault


def _unchanged(vault: Path, operator: Connection) -> None:
    status = operator.request("status")["status"]
    assert status["state"] == "RUNNING"
    assert not any(job["paused"] for job in operator.request("jobs")["jobs"])
    assert operator.request("history")["runs"] == []
    assert (vault / ITEM).exists()


def test_the_keeper_refuses_every_change_from_a_read_session(make_vault, daemon) -> None:
    vault = _vault(make_vault)
    daemon(vault)
    with Connection(vault, role="read") as reader, Connection(vault) as operator:
        operator.request("pause")  # so that a read session's resume would show
        for op, variants in CHANGES.items():
            for args in variants:
                with pytest.raises(ControlFailed, match="read-only session"):
                    reader.request(op, **args)
        # Claiming operate on the same connection lifts nothing.
        with pytest.raises(ControlFailed, match="read-only session"):
            reader.request("approve", path=ITEM, role="operate")
        assert reader.request("resume", preview=True)["changed"] is False
        operator.request("resume")
        _unchanged(vault, operator)
        # The same requests from an operator do what they say: the refusals were the role's.
        assert operator.request("run", job="ok", params={"day": "2026-12-01"}, wait=True)["record"]
        assert operator.request("approve", path=ITEM)["decision"]
        assert not (vault / ITEM).exists()


def test_serve_refuses_every_change_for_a_read_token(make_vault, daemon, servers) -> None:
    vault = _vault(make_vault)
    daemon(vault)
    read = add_token(vault, "viewer", "read")
    served = servers.start(vault)
    for op, variants in CHANGES.items():
        for args in variants:
            code, answer = served.post(f"/api/{op}", args, read)
            assert code == 403 and "read-only session" in answer["error"], (op, args)
    # A body claiming a role is not taken at its word.
    code, _ = served.post("/api/run", {"job": "ok", "role": "operate"}, read)
    assert code == 403
    with Connection(vault) as operator:
        _unchanged(vault, operator)
    result = run_cli("history", "--job", "ok", "--json", "--vault", str(vault))
    assert result.returncode == 0 and result.stdout.strip() == "[]"
    # An operate token may decide a work item over HTTP too (the refusal was the role's).
    operate = add_token(vault, "ops", "operate")
    code, answer = served.post("/api/dismiss", {"path": ITEM, "reason": "spam"}, operate)
    assert code == 200 and answer["decision"] and not (vault / ITEM).exists(), answer
