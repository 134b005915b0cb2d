"""The jobs the keeper runs, as the config says, and how a reload changes them: a new
or changed job gets a fresh runtime (its slots laid out afresh); runs in flight and
queued runs carry over; a job that left the config is dropped."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from watchkeeper.core.config import Config, JobConfig
from watchkeeper.core.environment import Masker, job_environment, secret_values
from watchkeeper.core.logs import JobLogFile, RotatingFile
from watchkeeper.core.runtime import JobRuntime
from watchkeeper.core.slots import Slots
from watchkeeper.core.triggers import schedules_for


@dataclass(frozen=True)
class JobLogs:
    """How a job's log is opened, the same for every job: each runtime opens its own at
    its first run (core/runtime.py)."""

    folder: Path
    max_size: int
    backups: int
    on_error: Callable[[Path, OSError], None]

    def open(self, job: str) -> RotatingFile:
        return JobLogFile(self.folder, job, self.max_size, self.backups, on_error=self.on_error)


def same_job(a: JobConfig, b: JobConfig) -> bool:
    return replace(a, line=0) == replace(b, line=0)


def job_limits(config: Config) -> dict[str, int]:
    return {name: job.max_per_hour for name, job in config.jobs.items() if job.max_per_hour}


class JobTable:
    """`jobs` is the keeper's one dict of runtimes, changed in place."""

    def __init__(
        self, config: Config, slots: Slots, on_log_error: Callable[[Path, OSError], None]
    ) -> None:
        self.vault = config.vault
        self.slots = slots
        self.on_log_error = on_log_error
        self.logs = self.vault / "Logs" / "jobs"
        # Jobs without env of their own share one copy of the keeper's environment and
        # one masker: with thousands of jobs, per-job copies would dominate memory.
        self.shared_env = dict(os.environ)
        self.shared_masker = Masker(secret_values(self.shared_env, ()))
        self._logs: JobLogs | None = None
        self._open_log: Callable[[str], RotatingFile] | None = None
        self.jobs = {name: self.make(job, config) for name, job in config.jobs.items()}

    def make(self, job: JobConfig, config: Config) -> JobRuntime:
        if job.env or job.secret_env:
            # env_file is read at each run instead (see core/runs.py), so left out here.
            base_env = job_environment(replace(job, env_file=None), self.vault, os.environ)
            masker = Masker(secret_values(base_env, job.secret_env))
        else:
            base_env, masker = self.shared_env, self.shared_masker
        return JobRuntime(
            config=job,
            schedules=schedules_for(job, config.keeper.tz) if job.enabled else (),
            open_log=self.log_opener(config),
            base_env=base_env,
            masker=masker,
        )

    def log_opener(self, config: Config) -> Callable[[str], RotatingFile]:
        """One opener for all the jobs made under the same log settings: a bound method
        is an object of its own, and so would be one per job."""
        settings = config.keeper
        logs = JobLogs(self.logs, settings.log_max_size, settings.log_backups, self.on_log_error)
        if self._open_log is None or logs != self._logs:
            self._logs, self._open_log = logs, logs.open
        return self._open_log

    def lay_out(self) -> None:
        """Every job's first slots, from now."""
        for name, runtime in self.jobs.items():
            self.slots.first_dues(runtime)
            self.slots.lay_out(name, runtime)

    def fresh(self, config: Config, old: Config) -> dict[str, JobRuntime]:
        """The jobs of `config` that are new or changed, ready to take over. Everything
        that could fail is made here, before the running config is let go."""
        fresh = {}
        for name, job in config.jobs.items():
            runtime = self.jobs.get(name)
            changed = runtime is None or not same_job(runtime.config, job)
            if changed or config.keeper.tz != old.keeper.tz:
                fresh[name] = self.make(job, config)
                self.slots.first_dues(fresh[name])
        return fresh

    def apply(
        self, config: Config, fresh: dict[str, JobRuntime], drop: Callable[[JobRuntime], None]
    ) -> None:
        for name in [name for name in self.jobs if name not in config.jobs]:
            drop(self.jobs.pop(name))
        for name, job in config.jobs.items():
            runtime, new = self.jobs.get(name), fresh.get(name)
            if new is None:
                assert runtime is not None
                runtime.config = job
                continue
            if runtime is not None:
                new.active, new.queued, new.last = runtime.active, runtime.queued, runtime.last
                for active in new.active.values():
                    active.runtime = new
            self.jobs[name] = new
            self.slots.lay_out(name, new)
