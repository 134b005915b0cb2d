"""A new leader's runs in flight on workers: the former leader's runs that a worker
holds (or that wait in its queue, or ended while no leader watched) are not closed
`interrupted` like a dead keeper's local children; the new leader watches them to their
end through the RemoteExecutor, so they are recorded once, by it. And a leader that
loses its lease lets go of them without ending them: they belong to the next one.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from watchkeeper.core.cluster.pgstore import PgStore
from watchkeeper.core.cluster.routing import RoutingExecutor
from watchkeeper.core.config_cluster import ON_KEEPER
from watchkeeper.core.environment import EnvFileError
from watchkeeper.core.history import RunRecord
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.output import OutputSink
from watchkeeper.core.runprep import run_env
from watchkeeper.core.runtime import ActiveRun, StartRequest
from watchkeeper.core.seams import utc

_REMOTE_OF = "SELECT run_id FROM watchkeeper.remote_runs WHERE cluster = %s AND run_id = ANY(%s)"


class LeaderStore(PgStore):
    """PgStore whose open runs leave out those a worker carries: the keeper's start
    closes the rest `interrupted`, these are adopted instead."""

    adopting: dict[str, RunRecord]

    def open_runs(self, since: Any) -> list[RunRecord]:
        return [r for r in super().open_runs(since) if r.id not in self.adopting]


async def runs_on_workers(store: PgStore, conn: Any, cluster: str, keeper: Keeper) -> None:
    """Note in `store.adopting` the open runs that have a row in watchkeeper.remote_runs."""
    assert isinstance(store, LeaderStore)
    store.adopting = {}
    open_runs = PgStore.open_runs(store, utc(keeper.clock) - timedelta(days=2))
    if not open_runs:
        return
    cursor = await conn.execute(_REMOTE_OF, (cluster, [r.id for r in open_runs]))
    remote = {str(row[0]) for row in await cursor.fetchall()}
    store.adopting = {r.id: r for r in open_runs if r.id in remote}


async def adopt(keeper: Keeper, store: LeaderStore) -> int:
    """Watch the runs noted in `store.adopting` as this keeper's own; how many."""
    executor = keeper.runs.executor
    if not store.adopting or not isinstance(executor, RoutingExecutor):
        return 0
    tokens: list[tuple[Any, str]] = []
    for record in store.adopting.values():
        active = _in_flight(keeper, record)
        if active is None:
            continue
        tokens.append(([active, None], record.id))
    specs = await executor.adopt(tokens)
    for token, run_id in tokens:
        spec = specs.get(run_id)
        if spec is None:  # no longer known to the workers' table: closed as a dead run
            _forget(keeper, token[0])
            continue
        token[1] = spec
        keeper.log.info(f"run {run_id} of {token[0].record.job}: adopted from the former leader")
    store.adopting = {}
    return sum(1 for token, _ in tokens if token[1] is not None)


def _in_flight(keeper: Keeper, record: RunRecord) -> ActiveRun | None:
    runtime = keeper.jobs.get(record.job)
    if runtime is None:
        return None
    request = StartRequest(
        record.job,
        record.trigger,
        attempt=record.attempt,
        files=list(record.files),
        run_id=record.id,
    )
    try:
        _, masker = run_env(runtime, request, keeper.vault)
    except (EnvFileError, ValueError):
        masker = runtime.masker
    sink = OutputSink(runtime.log, record.id, masker, keeper.tz, keeper.bus.lines_of(record.job))
    active = ActiveRun(request, record, None, sink, runtime)
    runtime.active[record.id] = active
    keeper.runs.active[record.id] = active
    keeper.runs.idle.clear()
    return active


def _forget(keeper: Keeper, active: ActiveRun) -> None:
    keeper.runs.active.pop(active.record.id, None)
    active.runtime.active.pop(active.record.id, None)


def let_go(keeper: Keeper) -> int:
    """As a leader that lost its lease stops: its runs on workers are left to run (the
    next leader adopts them), not ended by the drain. How many."""
    executor = keeper.runs.executor
    if not isinstance(executor, RoutingExecutor):
        return 0
    executor.remote.shutdown()  # hears nothing more of them: the next leader will
    remote = [
        active
        for active in list(keeper.runs.active.values())
        if active.runtime.config.runs_on != ON_KEEPER
    ]
    for active in remote:
        _forget(keeper, active)
    with contextlib.suppress(Exception):
        keeper.runs.release_waiting()  # the keeper is stopping: only settles `idle`
    return len(remote)
