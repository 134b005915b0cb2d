"""What a run is made of before it starts: its argv, its environment (and the masker
for its secrets), and its history record."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from watchkeeper.core.config import Command, Config
from watchkeeper.core.environment import Masker, job_environment, secret_values
from watchkeeper.core.handover import files_env
from watchkeeper.core.history import RunRecord
from watchkeeper.core.limits import limits_of
from watchkeeper.core.params import param_env, recorded, run_values, secrets
from watchkeeper.core.runner import RunSpec
from watchkeeper.core.runtime import JobRuntime, StartRequest


def argv(command: Command) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def run_env(
    runtime: JobRuntime, request: StartRequest, vault: Path
) -> tuple[dict[str, str], Masker]:
    """Raises EnvFileError for an env_file that cannot be read as one."""
    env, masker = runtime.base_env, runtime.masker
    if runtime.config.env_file:
        # Read at every run so an edited env_file applies without a reload.
        env = job_environment(runtime.config, vault, os.environ)
        masker = Masker(secret_values(env, runtime.config.secret_env))
    env = {
        **env,
        "WATCHKEEPER_VAULT": str(vault),
        "WATCHKEEPER_JOB": request.job,
        "WATCHKEEPER_RUN_ID": request.run_id,
        "WATCHKEEPER_TRIGGER": request.trigger,
    }
    if request.files:
        env.update(files_env(request.files))
    if not runtime.config.params:  # as run_values() would find, without the call
        return env, masker
    values = run_values(runtime.config, request.params)
    if values:
        env.update(param_env(values))
        if hidden := secrets(values):
            masker = Masker([*masker.secrets, *hidden])
    return env, masker


def run_spec(
    request: StartRequest, config: Config, env: dict[str, str], cwd: Path
) -> RunSpec:
    """The spec the executor starts: the job's command, limits and where it runs."""
    job = config.jobs[request.job]
    return RunSpec(
        request.run_id,
        argv(job.command),
        env,
        cwd,
        job.timeout,
        config.keeper.kill_grace,
        runs_on=job.runs_on,
        job=request.job,
        http=job.http,
        limits=limits_of(job),
    )


def run_record(
    request: StartRequest, started_at: datetime, config: Config, vault: Path, host: str
) -> RunRecord:
    """Its `running` record; a run that never starts gets one too, closed at once."""
    job = config.jobs.get(request.job)
    return RunRecord(
        id=request.run_id,
        job=request.job,
        project=vault.name,
        started_at=started_at,
        status="running",
        trigger=request.trigger,
        host=host,
        cron=job.cron if job is not None else None,
        attempt=request.attempt,
        files=list(request.files),
        params=recorded(run_values(job, request.params)) if job and job.params else None,
    )
