"""`--once`: each enabled scheduled job once, then what their `after` chains start, then
every file waiting for a job. `--dry-run` prints the same plan without running it: both
read it from plan_once(), so what the dry run lists is what --once runs.

Chains follow the keeper's rule for waves: a job whose `after` jobs all succeed in one
wave runs in that wave. The scheduled jobs of one --once make one wave; each file run
makes its own, so a job after a file job runs when that job's files were handed over,
and a job after a file job and a scheduled one never runs here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from watchkeeper.core.config import Config, JobConfig
from watchkeeper.core.filewatch import scan
from watchkeeper.core.keeper import Keeper, StartRequest
from watchkeeper.core.ledger import LEDGER_NAME, Ledger, file_digest
from watchkeeper.core.state import RuntimeState, load_state


@dataclass(frozen=True)
class FileRuns:
    job: str
    files: int  # waiting for it now
    then: list[str]  # what its chain starts once it succeeds


@dataclass(frozen=True)
class OncePlan:
    scheduled: list[str]  # started together, on schedule
    left_out: list[str]  # scheduled, but paused
    then: list[str]  # started by the scheduled jobs' chains, as they succeed
    files: list[FileRuns] = field(default_factory=list)


def runs_itself(job: JobConfig, state: RuntimeState) -> bool:
    """Whether a job runs when its trigger fires (enabled, not paused): the keeper's
    rule for slots, chains and files alike."""
    return job.enabled and not state.is_paused(job.name)


def chain_from(config: Config, state: RuntimeState, wave: list[str]) -> list[str]:
    """The jobs that run in a wave whose runs of `wave` all succeed (and theirs too),
    in the order they become due."""
    succeeded, started = set(wave), []
    grew = True
    while grew:
        grew = False
        for name, job in config.jobs.items():
            if name in started or not job.after or not runs_itself(job, state):
                continue
            if succeeded.issuperset(job.after):
                started.append(name)
                succeeded.add(name)
                grew = True
    return started


def plan_once(config: Config, state: RuntimeState, files: dict[str, int]) -> OncePlan:
    """`files`: how many files wait for each `on_files` job (waiting_files())."""
    scheduled = [job for job in config.jobs.values() if job.enabled and job.scheduled]
    chosen = [job.name for job in scheduled if runs_itself(job, state)]
    file_runs = [
        FileRuns(name, count, chain_from(config, state, [name]))
        for name, count in files.items()
        if count and runs_itself(config.jobs[name], state)
    ]
    return OncePlan(
        chosen,
        [job.name for job in scheduled if not runs_itself(job, state)],
        chain_from(config, state, chosen),
        file_runs,
    )


def waiting_files(config: Config) -> dict[str, int]:
    """Files each `on_files` job has not been handed yet, as the keeper's ledger says."""
    ledger = Ledger(config.vault / "Logs" / LEDGER_NAME)
    ledger.load()
    waiting = {}
    for name, job in config.jobs.items():
        if not job.on_files:
            continue
        count = 0
        for rel in scan(config.vault, job.on_files):
            try:
                digest = file_digest(config.vault / rel)
            except OSError:
                continue  # gone meanwhile, or unreadable: the keeper would skip it too
            count += ledger.wants(name, rel, digest)
        waiting[name] = count
    return waiting


def describe(plan: OncePlan, config: Config) -> list[str]:
    """The dry run's lines."""
    lines = [f"would run {name}: {config.jobs[name].trigger_summary}" for name in plan.scheduled]
    lines += [
        f"would run {name}: {config.jobs[name].trigger_summary} (paused: would be left out)"
        for name in plan.left_out
    ]
    if plan.then:
        lines.append("then, as their chains succeed: " + ", ".join(plan.then))
    for runs in plan.files:
        lines.append(f"would hand {runs.files} waiting file(s) to {runs.job}")
        if runs.then:
            lines.append(f"then, as {runs.job} succeeds: " + ", ".join(runs.then))
    if not lines:
        lines.append("nothing to run: no enabled scheduled job and no file waiting")
    return lines


def dry_run(config: Config) -> list[str]:
    return describe(plan_once(config, load_state(config.vault), waiting_files(config)), config)


async def run_once(keeper: Keeper) -> list[str]:
    """--once, after start(files=False): the plan's scheduled jobs in one wave (their
    chains follow as they succeed), then every file waiting for a job. Returns the names
    of the jobs started on schedule."""
    chosen = plan_once(keeper.config, keeper.state, {}).scheduled
    wave = f"once:{time.time():.0f}"
    for name in chosen:
        keeper.submit(StartRequest(name, "schedule", wave=wave))
    await keeper.wait_idle()
    keeper.handover.rescan()
    # Files still being written settle first; failed ones go back in line after a
    # backoff. Both end as runs (or quarantine), and then there is nothing left to do.
    while keeper.handover.settling or keeper.active or keeper.pending_timers:
        await keeper.wait_idle()
        await asyncio.sleep(0.05)
    return chosen
