"""The leader's judgement of workers that stopped answering, by procrastinate's worker
heartbeats (the database's clock): their runs are ended `interrupted`, naming the
worker, and a run whose job a dead worker fetched but never claimed goes back to a queue.
"""

from __future__ import annotations

from typing import Any

import psycopg


async def end_lapsed(
    conn: psycopg.AsyncConnection[Any], cluster: str, run_ids: list[str], lapse: float
) -> list[tuple[str, int | None]]:
    """Ends every running run of `run_ids` whose worker's heartbeat is older than
    `lapse` seconds: (run id, its procrastinate job id) of each."""
    cursor = await conn.execute(
        "UPDATE watchkeeper.remote_runs r SET state = 'ended', status = 'interrupted',"
        " error = 'worker ' || r.worker_id || ' stopped answering (no heartbeat for '"
        " || %s || 's)', ended_at = clock_timestamp(),"
        " duration_ms = (extract(epoch FROM clock_timestamp() - r.started_at) * 1000)::bigint"
        " WHERE r.cluster = %s AND r.run_id = ANY(%s) AND r.state = 'running'"
        " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
        "   JOIN procrastinate_workers w ON w.id = j.worker_id WHERE j.id = r.job_id"
        "   AND w.last_heartbeat > clock_timestamp() - make_interval(secs => %s))"
        " RETURNING r.run_id, r.job_id",
        (f"{lapse:g}", cluster, run_ids, lapse),
    )
    return [(run_id, job_id) for run_id, job_id in await cursor.fetchall()]


async def unclaimed(
    conn: psycopg.AsyncConnection[Any], cluster: str, run_ids: list[str], lapse: float
) -> list[tuple[str, str, int]]:
    """(run id, queue, job id) of each queued run of `run_ids` whose job a worker took
    and then stopped answering before it claimed the run: nobody would ever take that
    job again, so the caller gives the run a new one."""
    cursor = await conn.execute(
        "SELECT r.run_id, r.queue, r.job_id FROM watchkeeper.remote_runs r"
        " JOIN procrastinate_jobs j ON j.id = r.job_id"
        " LEFT JOIN procrastinate_workers w ON w.id = j.worker_id"
        " WHERE r.cluster = %s AND r.run_id = ANY(%s) AND r.state = 'queued'"
        " AND j.status = 'doing' AND (w.id IS NULL"
        "   OR w.last_heartbeat <= clock_timestamp() - make_interval(secs => %s))",
        (cluster, run_ids, lapse),
    )
    return [(run_id, name, job_id) for run_id, name, job_id in await cursor.fetchall()]
