"""A running keeper's answers and events have the shapes control_protocol gives them as
TypedDicts (the keeper builds plain dicts: these keep the two the same)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemons, wait_for

from watchkeeper.core import control_client
from watchkeeper.core.control_client import Connection
from watchkeeper.core.control_protocol import (
    CancelAnswer,
    ErrorAnswer,
    EventMessage,
    HistoryAnswer,
    JobView,
    PauseAnswer,
    PlanJson,
    PlannedRunJson,
    QuotaUsage,
    ResumeAnswer,
    RunAnswer,
    RunJson,
    RunningView,
    Snapshot,
    Today,
)
from watchkeeper.core.vault import ensure_layout

CONFIG = """
    [jobs.shape]
    command = ["true"]

    [jobs.shape_slow]
    command = ["sleep", "60"]
    """


@pytest.fixture(scope="module")
def keeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("shapes")
    vault = folder / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(textwrap.dedent(CONFIG))
    started = Daemons(folder)
    started.start(vault)
    yield vault
    started.stop_all()


def job_view(vault: Path, name: str) -> dict[str, Any]:
    jobs = control_client.request(vault, "jobs")["jobs"]
    return next(job for job in jobs if job["name"] == name)


def keys_fit(data: dict[str, Any], shape: type) -> bool:
    """`data` has every key `shape` (a TypedDict) requires and none it does not know."""
    required: frozenset[str] = shape.__required_keys__  # type: ignore[attr-defined]
    return required <= data.keys() <= set(shape.__annotations__)


def test_answers_have_the_protocols_shapes(keeper: Path) -> None:
    """The keeper's views are plain dicts; the TypedDicts in control_protocol are what
    clients type them as, so each answer's keys are held to them."""
    vault = keeper
    ran = control_client.request(vault, "run", job="shape", wait=True)
    assert keys_fit(ran, RunAnswer) and keys_fit(ran["record"], RunJson)
    history = control_client.request(vault, "history", job="shape", limit=1)
    assert keys_fit(history, HistoryAnswer) and keys_fit(history["runs"][0], RunJson)
    started = control_client.request(vault, "run", job="shape_slow")
    assert keys_fit(started, RunAnswer)
    wait_for(lambda: job_view(vault, "shape_slow")["running"])
    snapshot = control_client.request(vault, "status")["status"]
    assert keys_fit(snapshot, Snapshot) and keys_fit(snapshot["today"], Today)
    assert all(keys_fit(usage, QuotaUsage) for usage in snapshot["quota"])
    jobs = {job["name"]: job for job in control_client.request(vault, "jobs")["jobs"]}
    assert all(keys_fit(job, JobView) for job in jobs.values())
    assert keys_fit(jobs["shape"]["last"], RunJson)
    assert keys_fit(jobs["shape_slow"]["running"][0], RunningView)
    cancelled = control_client.request(vault, "cancel", run_id=started["run_id"])
    assert keys_fit(cancelled, CancelAnswer)
    paused = control_client.request(vault, "pause", job="shape")
    assert keys_fit(paused, PauseAnswer)
    resumed = control_client.request(vault, "resume", job="shape", preview=True)
    assert keys_fit(resumed, ResumeAnswer) and keys_fit(resumed["plan"], PlanJson)
    assert all(keys_fit(run, PlannedRunJson) for run in resumed["plan"]["runs"])
    assert keys_fit(control_client.request(vault, "resume", job="shape"), ResumeAnswer)
    with Connection(vault) as connection:
        connection._socket.sendall(b'{"op": "fly"}\n')
        assert keys_fit(connection.read(), ErrorAnswer)
    stream, snapshot = control_client.subscribe(vault)
    with stream:
        assert keys_fit(snapshot, Snapshot)
        control_client.request(vault, "run", job="shape")
        assert keys_fit(stream.read(), EventMessage)
