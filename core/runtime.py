"""What the keeper holds per job and per run while it runs: plain data the parts share."""

from __future__ import annotations

import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.config import Config, JobConfig
from core.environment import Masker, job_environment, secret_values
from core.history import RunRecord
from core.logs import RotatingFile
from core.output import OutputSink
from core.seams import RunHandle
from core.triggers import Schedule, schedules_for


class UnknownJob(LookupError):
    """No job of that name in the running config."""

    def __init__(self, job: str) -> None:
        super().__init__(job)
        self.job = job

    def __str__(self) -> str:
        return f"no job named {self.job!r}"


def new_run_id() -> str:
    # Not a secret, only unique: the PRNG spares a getrandom() call per run.
    return f"{time.time_ns() // 1_000_000:x}-{random.getrandbits(24):06x}"


@dataclass
class StartRequest:
    job: str
    trigger: str
    attempt: int = 1
    files: list[str] = field(default_factory=list)
    due_mono: float | None = None
    due_wall: float | None = None  # the slot's time on the wall clock
    run_id: str = field(default_factory=new_run_id)
    wave: str | None = None
    """Runs of one wave (one slot, one --once, one manual start and what follows from
    it) satisfy `after` lists together."""


@dataclass
class JobRuntime:
    config: JobConfig
    schedules: list[Schedule]
    log: RotatingFile
    base_env: dict[str, str]
    masker: Masker
    next_due: list[float] = field(default_factory=list)
    active: dict[str, ActiveRun] = field(default_factory=dict)
    queued: deque[StartRequest] = field(default_factory=deque)
    last: RunRecord | None = None
    waves: OrderedDict[str, set[str]] = field(default_factory=OrderedDict)
    missed_while_paused: int = 0
    file_request: bool = False
    files_not_before: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class ActiveRun:
    request: StartRequest
    record: RunRecord
    run: RunHandle | None  # None while the executor starts it
    sink: OutputSink
    runtime: JobRuntime
    stop_asked: tuple[str, str] | None = None

    def stop(self, status: str, reason: str) -> None:
        if self.run is None:
            self.stop_asked = (status, reason)  # applied the moment it has started
        else:
            self.run.stop(status, reason)


def same_job(a: JobConfig, b: JobConfig) -> bool:
    return replace(a, line=0) == replace(b, line=0)


class Runtimes:
    """Makes a job's runtime. Jobs without env of their own share one copy of the
    keeper's environment and one masker: with thousands of jobs, per-job copies would
    dominate memory."""

    def __init__(self, vault: Path, on_log_error: Callable[[Path, OSError], None]) -> None:
        self.vault = vault
        self.on_log_error = on_log_error
        self.shared_env = dict(os.environ)
        self.shared_masker = Masker(secret_values(self.shared_env, ()))

    def make(self, job: JobConfig, config: Config) -> JobRuntime:
        if job.env or job.secret_env:
            # env_file is read at each run instead (see core/runs.py), so left out here.
            base_env = job_environment(replace(job, env_file=None), self.vault, os.environ)
            masker = Masker(secret_values(base_env, job.secret_env))
        else:
            base_env, masker = self.shared_env, self.shared_masker
        return JobRuntime(
            config=job,
            schedules=schedules_for(job, config.keeper.tz) if job.enabled else [],
            log=RotatingFile(
                self.vault / "Logs" / "jobs" / f"{job.name}.log",
                config.keeper.log_max_size,
                config.keeper.log_backups,
                on_error=self.on_log_error,
            ),
            base_env=base_env,
            masker=masker,
        )
