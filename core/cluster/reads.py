"""The cluster's history as the one-host readers answer it (core/history.py's recent and
stats, core/status.py's last runs and today's counts), from watchkeeper.runs: any keeper,
or the CLI on any host, sees the whole cluster's runs.

Every function takes a psycopg connection (sync) and the cluster's name. A database
that has no schema yet (no keeper ever started) has no runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg

from watchkeeper.core.cluster.db import connect_sync
from watchkeeper.core.cluster.dsn import unavailable
from watchkeeper.core.history import (
    FINAL_STATUSES,
    STATUSES,
    JobStats,
    Query,
    QueryResult,
    RunRecord,
    Start,
)
from watchkeeper.core.state import RuntimeState, state_from

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.config_cluster import ClusterConfig

Conn = psycopg.Connection[tuple[Any, ...]]

# As core/status.py: the newest final run per job within the day, else the week.
LOOKBACK = timedelta(days=7)
_FINAL_ORDER = tuple(status for status in STATUSES if status in FINAL_STATUSES)
_NEWEST = "ORDER BY started DESC, run_id DESC"


def has_schema(conn: Conn) -> bool:
    row = conn.execute("SELECT to_regclass('watchkeeper.runs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _records(rows: Iterable[tuple[Any, ...]]) -> list[RunRecord]:
    return [RunRecord.from_json(row[0]) for row in rows]


def recent(conn: Conn, cluster: str, query: Query) -> QueryResult:
    """history.recent(): the newest `query.limit` runs matching, newest first by start."""
    if query.limit <= 0 or not has_schema(conn):
        return QueryResult([], 0)
    where: list[str] = ["cluster = %s"]
    params: list[object] = [cluster]
    for column, value in (("job", query.job), ("status", query.status)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if query.since is not None:
        where.append("started >= %s")
        params.append(query.since)
    sql = f"SELECT record FROM watchkeeper.runs WHERE {' AND '.join(where)} {_NEWEST} LIMIT %s"
    return QueryResult(_records(conn.execute(sql, (*params, query.limit))), 0)


def open_runs(conn: Conn, cluster: str, since: datetime) -> list[RunRecord]:
    """Runs whose latest line is `running`, started since `since`."""
    if not has_schema(conn):
        return []
    sql = (
        "SELECT record FROM watchkeeper.runs"
        f" WHERE cluster = %s AND status = 'running' AND started >= %s {_NEWEST}"
    )
    return _records(conn.execute(sql, (cluster, since)))


def starts(
    conn: Conn, cluster: str, since: datetime
) -> list[tuple[str, str, float, str, int | None]]:
    """(run id, job, start, status, exit code) of every run started since `since`."""
    if not has_schema(conn):
        return []
    rows = conn.execute(
        "SELECT run_id, job, started, status, (record->>'exitCode')::int FROM watchkeeper.runs"
        " WHERE cluster = %s AND started >= %s",
        (cluster, since),
    )
    return [(run, job, at.timestamp(), status, code) for run, job, at, status, code in rows]


def stats(conn: Conn, cluster: str, since: datetime) -> dict[str, JobStats]:
    """history.stats(): per job, over the runs started since `since` that have ended."""
    if not has_schema(conn):
        return {}
    rows = conn.execute(
        """
        WITH ended AS (
            SELECT job, status, duration_ms, started, run_id, record FROM watchkeeper.runs
            WHERE cluster = %(cluster)s AND started >= %(since)s AND status <> 'running'
        ), per_job AS (
            SELECT job,
                jsonb_object_agg(status, runs) AS counts,
                sum(runs)::bigint AS runs
            FROM (SELECT job, status, count(*) AS runs FROM ended GROUP BY job, status) s
            GROUP BY job
        ), ranks AS (
            -- nearest rank, as core/stats.py: the ceil(p * n / 100)-th smallest
            SELECT job,
                (array_agg(duration_ms ORDER BY duration_ms) FILTER (WHERE duration_ms IS NOT NULL))
                    [greatest((50 * count(duration_ms) + 99) / 100, 1)] AS p50,
                (array_agg(duration_ms ORDER BY duration_ms) FILTER (WHERE duration_ms IS NOT NULL))
                    [greatest((95 * count(duration_ms) + 99) / 100, 1)] AS p95
            FROM ended GROUP BY job
        ), newest AS (
            SELECT DISTINCT ON (job) job, record FROM ended
            ORDER BY job, started DESC, run_id DESC
        )
        SELECT per_job.job, per_job.runs, per_job.counts, ranks.p50, ranks.p95, newest.record
        FROM per_job JOIN ranks USING (job) JOIN newest USING (job)
        """,
        {"cluster": cluster, "since": since},
    )
    result: dict[str, JobStats] = {}
    for job, runs, counts, p50, p95, record in rows:
        # Skipped runs never ran and an operator's cancel says nothing of the job.
        judged = runs - counts.get("skipped", 0) - counts.get("cancelled", 0)
        result[job] = JobStats(
            job=job,
            runs=int(runs),
            counts={status: counts.get(status, 0) for status in _FINAL_ORDER},
            success_rate=counts.get("success", 0) / judged if judged else None,
            p50_ms=p50,
            p95_ms=p95,
            last_run=RunRecord.from_json(record),
        )
    return result


def last_runs(
    conn: Conn, cluster: str, jobs: Iterable[str], tz: ZoneInfo
) -> tuple[dict[str, RunRecord], dict[str, int], int]:
    """status.last_runs(): each job's newest final run (within a week), and today's (in
    `tz`) ok/failed counts of the runs that started today and ended. No unreadable lines
    in a database: the third is 0."""
    names = list(jobs)
    if not has_schema(conn):
        return {}, {"ok": 0, "failed": 0}, 0
    now = datetime.now(tz)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    last = {
        job: RunRecord.from_json(record)
        for job, record in conn.execute(
            "SELECT DISTINCT ON (job) job, record FROM watchkeeper.runs"
            " WHERE cluster = %s AND job = ANY(%s) AND started >= %s AND status <> 'running'"
            " ORDER BY job, started DESC, run_id DESC",
            (cluster, names, now - LOOKBACK),
        )
    }
    counts: dict[str, int] = {
        status: int(runs)
        for status, runs in conn.execute(
            "SELECT status, count(*) FROM watchkeeper.runs"
            " WHERE cluster = %s AND started >= %s AND status <> 'running' GROUP BY status",
            (cluster, midnight),
        )
    }
    today = {
        "ok": counts.get("success", 0),
        "failed": sum(counts.get(status, 0) for status in ("failure", "timeout", "interrupted")),
    }
    return last, today, 0


def pause_state(conn: Conn, cluster: str) -> dict[str, Any] | None:
    """The cluster's pauses as PgStore keeps them; None when none were ever written."""
    if not has_schema(conn):
        return None
    row = conn.execute(
        "SELECT state FROM watchkeeper.state WHERE cluster = %s", (cluster,)
    ).fetchone()
    return dict(row[0]) if row else None


T = TypeVar("T")


def answer(cluster: ClusterConfig, question: Callable[[Conn, str], T]) -> T:
    """`question(conn, cluster name)` on a connection of its own; DatabaseUnavailable
    (naming the database, masked) when the database cannot be reached or fails."""
    try:
        with connect_sync(cluster.database) as conn:
            return question(conn, cluster.name)
    except psycopg.Error as error:
        raise unavailable(cluster.database, error) from None


def jobs_view(conn: Conn, name: str, config: Config) -> list[dict[str, Any]]:
    """status.jobs_view() with the cluster's last runs and pauses."""
    from watchkeeper.core.status import jobs_view as files_view
    from watchkeeper.core.status import next_run_offline

    last = last_runs(conn, name, config.jobs, config.keeper.tz)[0]
    state = runtime_state(pause_state(conn, name))
    views = files_view(config, last)
    for view in views:
        # The pauses are the cluster's, not the ones this host's Logs/ last exported.
        paused = state is not None and state.is_paused(view["name"])
        if state is not None and paused != view["paused"]:
            view["paused"] = paused
            moment = None if paused else next_run_offline(config.jobs[view["name"]], config)
            view["next_run"] = moment.isoformat(timespec="seconds") if moment else None
    return views


def vault_status(conn: Conn, name: str, config: Config) -> dict[str, Any]:
    """status.vault_status() when no keeper answers: today, last runs, quota and pauses
    from the cluster's database; the keeper and folders from this host's files."""
    from watchkeeper.core.quota import WINDOW, Quota, started, usage_view
    from watchkeeper.core.status import keeper_info
    from watchkeeper.core.status_live import folders_view

    today = last_runs(conn, name, config.jobs, config.keeper.tz)[1]
    state = runtime_state(pause_state(conn, name))
    limits = {job: spec.max_per_hour for job, spec in config.jobs.items() if spec.max_per_hour}
    now = datetime.now(UTC)
    quota = Quota(config.keeper.max_runs_per_hour, limits)
    runs = starts(conn, name, now - timedelta(seconds=WINDOW))
    quota.rebuild(
        ((job, at) for _, job, at, status, code in runs if started(Start(job, at, status, code))),
        now.timestamp(),
    )
    return {
        "vault": str(config.vault),
        "keeper": keeper_info(config.vault),
        "source": "database",
        "paused": state.paused if state is not None else False,
        "folders": folders_view(config.vault),
        "today": today,
        "jobs": jobs_view(conn, name, config),
        "quota": usage_view(quota.usage(now.timestamp())),
        "history_bad_lines": 0,
    }


def runtime_state(data: dict[str, Any] | None) -> RuntimeState | None:
    """The pauses as watchkeeper.state holds them (None: never written)."""
    return None if data is None else state_from(data)
