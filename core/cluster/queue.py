"""The procrastinate side of cluster mode: one App on the cluster's database, one task
that carries a run id to a worker, and a queue per label set.

A job with `runs_on = ["gpu", "linux"]` goes to the queue `wk.<cluster>.gpu+linux`; one
with `runs_on = "any"` to `wk.<cluster>.any`. A worker with labels L listens on `any` and
on the queue of every non-empty subset of L: whatever runs_on asks, a worker that has all
of those labels takes it, and procrastinate's locking hands each job to one worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from itertools import combinations
from typing import Any

import procrastinate
from procrastinate.schema import SchemaManager

TASK = "watchkeeper.run"
ANY = "any"
# 2**10 - 1 queues for ten labels: more would make every fetch list a thousand queues.
MAX_LABELS = 10


def queue_for(cluster: str, runs_on: Iterable[str]) -> str:
    wanted = sorted(set(runs_on))
    if not wanted or wanted == [ANY]:
        return f"wk.{cluster}.{ANY}"
    return f"wk.{cluster}.{'+'.join(wanted)}"


def queues_of(cluster: str, labels: Iterable[str]) -> list[str]:
    """Every queue a worker with `labels` serves, `any` first."""
    own = sorted(set(labels) - {ANY})
    if len(own) > MAX_LABELS:
        raise ValueError(f"a worker takes at most {MAX_LABELS} labels, got {len(own)}")
    subsets = (combo for size in range(1, len(own) + 1) for combo in combinations(own, size))
    return [queue_for(cluster, ()), *(queue_for(cluster, subset) for subset in subsets)]


def make_app(dsn: str, run: Callable[..., Awaitable[None]] | None = None) -> procrastinate.App:
    """The App on `dsn` (opened by the caller with `open_async`). A worker passes `run`,
    the coroutine its task calls with the job's context and the run id; the leader only
    defers, so it needs none."""
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn, kwargs={"connect_timeout": 5}, min_size=1, max_size=4
    )
    app = procrastinate.App(connector=connector)
    if run is not None:
        app.task(name=TASK, pass_context=True)(run)
    return app


async def defer(app: procrastinate.App, queue: str, cluster: str, run_id: str) -> int:
    """The procrastinate job id of the run's job, waiting in `queue`."""
    deferrer = app.configure_task(TASK, queue=queue)
    return int(await deferrer.defer_async(cluster=cluster, run_id=run_id))


async def defer_many(
    app: procrastinate.App, queue: str, cluster: str, run_ids: list[str]
) -> list[int]:
    """The job ids of the runs' jobs, in order: one round trip for them all."""
    deferrer = app.configure_task(TASK, queue=queue)
    kwargs: list[dict[str, Any]] = [{"cluster": cluster, "run_id": r} for r in run_ids]
    return [int(job_id) for job_id in await deferrer.batch_defer_async(*kwargs)]


async def apply_schema(conn: Any) -> None:
    """procrastinate's tables and functions, once: its schema.sql is not idempotent, so
    it is applied only to a database that lacks it. Called by schema.ensure_schema under
    its advisory lock, which keeps two first starts from racing."""
    cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
    row = await cursor.fetchone()
    if row is not None and row[0]:
        return
    await conn.execute(SchemaManager.get_schema())
