"""What the control-socket tests share: a vault, the keeper the op tests talk to, and
reading its jobs and runs back."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import Daemons, final_records, lock_record

from watchkeeper.core import control_client
from watchkeeper.core.vault import ensure_layout


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


def ops_keeper(folder: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A running keeper of OPS_CONFIG in `folder`, stopped when the generator closes."""
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


def socket_of(vault: Path) -> Path:
    return Path(lock_record(vault)["socket"])
