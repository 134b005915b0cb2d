"""What a keeper does first: close the runs a dead keeper left open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from watchkeeper.core import history as hist
from watchkeeper.core.config import Config
from watchkeeper.core.history import RunRecord
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.processes import end_leftovers
from watchkeeper.core.runtime import JobRuntime
from watchkeeper.core.seams import Clock, Store, utc
from watchkeeper.core.slots import Slots
from watchkeeper.core.state import RuntimeState


async def close_interrupted(
    store: Store, previous: dict[str, Any], kill_grace: float, log: KeeperLog, clock: Clock
) -> list[RunRecord]:
    """Runs still `running` in the history since the previous keeper (as its lock file
    `previous` tells) started: their leftover processes ended, each closed
    `interrupted`. Returns them."""
    since = utc(clock) - timedelta(days=2)
    started = previous.get("started_at")
    if isinstance(started, str):
        with contextlib.suppress(ValueError):
            since = min(since, datetime.fromisoformat(started))
    open_runs = store.open_runs(since)
    if not open_runs:
        return []
    ended = await end_leftovers({record.id for record in open_runs}, kill_grace)
    holder = f"keeper pid {previous['pid']}" if "pid" in previous else "the previous keeper"
    for record in open_runs:
        record.status = "interrupted"
        record.completed_at = utc(clock)
        record.duration_ms = hist.elapsed_ms(
            (record.completed_at - record.started_at).total_seconds()
        )
        record.error = f"{holder} stopped while this run was in flight"
        if ended.get(record.id):
            record.error += f"; ended {ended[record.id]} leftover process(es)"
        store.history.append(record)
        log.warning(f"run {record.id} of {record.job} closed as interrupted: {record.error}")
    store.history.flush()  # before the keeper reads the history back
    return open_runs


async def prune_worktrees(config: Config, interrupted: list[RunRecord], log: KeeperLog) -> None:
    """The worktrees of runs a dead keeper left, settled as a failed run's are (removed
    unless keep_failed). git runs in a thread: the loop is already serving."""
    for record in interrupted:
        job = config.jobs.get(record.job)
        if record.worktree_branch is None:
            continue
        if job is None or job.isolate is None:
            log.warning(f"run {record.id} of {record.job}: its worktree branch "
                        f"{record.worktree_branch} is left: the job no longer isolates")
            continue
        from watchkeeper.core.worktree import WorktreeError, prune_interrupted  # isolated runs only

        try:
            said = await asyncio.to_thread(prune_interrupted, job, config.vault, record.id)
        except WorktreeError as error:
            said = f"cannot remove its worktree: {error}"
        log.info(f"run {record.id} of {record.job}: {said}")


def missed_while_down(
    jobs: Mapping[str, JobRuntime],
    last: Mapping[str, RunRecord],
    slots: Slots,
    state: RuntimeState,
) -> Iterator[str]:
    """The jobs whose slot passed while no keeper ran: one catch-up run each, never a
    burst. A paused job waits for its resume instead."""
    for name, runtime in jobs.items():
        record = last.get(name)
        if record is None or not runtime.schedules or state.is_paused(name):
            continue
        if slots.missed(runtime, record.started_at.timestamp()):
            yield name
