"""The cluster's tables, created and migrated by whichever keeper or worker starts first.

Versioned: `watchkeeper.schema_version` lists the migrations applied; each runs once, in
order, in one transaction under an advisory lock, so keepers starting together neither
race nor apply one twice. A database migrated by a newer watchkeeper is refused, not
written in a shape this one does not know. procrastinate's own schema is applied under
the same lock (core/cluster/queue.py).

Everything of ours lives in the `watchkeeper` schema; several clusters (the `cluster`
column, [cluster] name) may share one database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# pg_advisory_xact_lock key: "wk-schem" as a big-endian int64, fixed forever.
LOCK_KEY = int.from_bytes(b"wk-schem", "big") - 2**63

# ---- version 1 ------------------------------------------------------------------------
# Each block belongs to the module named before it; a block is edited only until the
# first release that ships it, then changes go in a new version.

_V1_LEASE = """
-- core/cluster/lease.py: one leader per cluster. The lease (`expires_at`, the database's
-- clock) says when a standby may take over; `epoch` grows at every takeover and fences:
-- a write that matters is made only with the current epoch (watchkeeper.leads). A
-- leader whose lease lapsed while nobody took over (the database was down) still holds
-- the current epoch, so what it kept in memory is written when the database is back;
-- it fires nothing meanwhile, by its own deadline in wall time.
CREATE TABLE watchkeeper.leader (
    cluster     text PRIMARY KEY,
    epoch       bigint NOT NULL,
    keeper_id   text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    socket      text NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE FUNCTION watchkeeper.leads(p_cluster text, p_epoch bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM watchkeeper.leader WHERE cluster = p_cluster AND epoch = p_epoch
    )
$$;
-- Every keeper, leader or standby, says it is alive here (`cluster status`).
CREATE TABLE watchkeeper.keepers (
    cluster    text NOT NULL,
    keeper_id  text NOT NULL,
    host       text NOT NULL,
    pid        integer NOT NULL,
    socket     text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    PRIMARY KEY (cluster, keeper_id)
);
-- Each (job, slot) fires at most once cluster-wide: the row is the proof it fired.
CREATE TABLE watchkeeper.slots (
    cluster  text NOT NULL,
    job      text NOT NULL,
    slot     timestamptz NOT NULL,
    epoch    bigint NOT NULL,
    run_id   text,
    fired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, job, slot)
);
-- Writes refused because their epoch was no longer the leader's (a fenced keeper's).
CREATE TABLE watchkeeper.rejections (
    cluster   text NOT NULL,
    epoch     bigint NOT NULL,
    keeper_id text NOT NULL,
    what      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

_V1_STORE = """
-- core/cluster/pgstore.py: history (a run's latest line), the file ledger, pause state.
CREATE TABLE watchkeeper.runs (
    cluster     text NOT NULL,
    run_id      text NOT NULL,
    job         text NOT NULL,
    status      text NOT NULL,
    trigger     text,
    host        text,
    started     timestamptz NOT NULL,
    finished    timestamptz,
    duration_ms bigint,
    record      jsonb NOT NULL,
    epoch       bigint NOT NULL,
    PRIMARY KEY (cluster, run_id)
);
CREATE INDEX runs_by_start ON watchkeeper.runs (cluster, started DESC);
CREATE INDEX runs_by_job ON watchkeeper.runs (cluster, job, started DESC);
CREATE INDEX runs_open ON watchkeeper.runs (cluster) WHERE status = 'running';
CREATE INDEX runs_by_end ON watchkeeper.runs (cluster, (coalesce(finished, started)));
-- The file ledger's lines in order, each the JSON text Logs/files.jsonl has (text, not
-- jsonb: a file name that is not UTF-8 is kept exactly, as \\udcXX escapes). `entry_id`
-- (the writing keeper's id and a counter) makes a line written again after a connection
-- lost at COMMIT a no-op, never a double.
CREATE TABLE watchkeeper.files (
    cluster  text NOT NULL,
    seq      bigserial,
    entry_id text NOT NULL,
    entry    text NOT NULL,
    epoch    bigint NOT NULL,
    PRIMARY KEY (cluster, seq),
    UNIQUE (cluster, entry_id)
);
CREATE TABLE watchkeeper.state (
    cluster    text PRIMARY KEY,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

_V1_REMOTE = """
-- core/cluster/remote.py and worker.py: runs carried to workers (procrastinate jobs),
-- their output and their end, and the workers themselves.
CREATE TABLE watchkeeper.workers (
    cluster     text NOT NULL,
    worker_id   text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    labels      text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (cluster, worker_id)
);
CREATE TABLE watchkeeper.remote_runs (
    cluster       text NOT NULL,
    run_id        text NOT NULL,
    job           text NOT NULL,
    queue         text NOT NULL,
    job_id        bigint,
    spec          jsonb NOT NULL,
    worker_id     text,
    host          text,
    pid           integer,
    -- queued → running (claimed by one worker, in SQL) → ended; the leader ends it too
    -- when the run was withdrawn before a worker took it or its worker's heartbeat lapsed.
    state         text NOT NULL DEFAULT 'queued',
    status        text,
    exit_code     integer,
    error         text,
    duration_ms   bigint,
    cancel_status text,
    cancel_reason text,
    queued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at    timestamptz,
    ended_at      timestamptz,
    PRIMARY KEY (cluster, run_id)
);
CREATE INDEX remote_runs_live ON watchkeeper.remote_runs (cluster) WHERE state <> 'ended';
CREATE TABLE watchkeeper.output (
    cluster text NOT NULL,
    run_id  text NOT NULL,
    seq     bigserial,
    chunk   bytea NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (cluster, run_id, seq)
);
"""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1_LEASE + _V1_STORE + _V1_REMOTE),)
LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(Exception):
    """The database was migrated by a newer watchkeeper."""


async def ensure_schema(
    conn: Any, also: Callable[[Any], Awaitable[None]] | None = None
) -> list[int]:
    """Apply the migrations this database lacks (and `also`, under the same lock): the
    versions applied now. `conn` is a psycopg AsyncConnection."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute("CREATE SCHEMA IF NOT EXISTS watchkeeper")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS watchkeeper.schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        cursor = await conn.execute(
            "SELECT coalesce(max(version), 0) FROM watchkeeper.schema_version"
        )
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST:
            raise SchemaTooNew(
                f"the cluster database is at schema version {current}, this watchkeeper "
                f"knows up to {LATEST}: upgrade watchkeeper on this host"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO watchkeeper.schema_version (version) VALUES (%s)", (version,)
                )
                applied.append(version)
        if also is not None:
            await also(conn)
    return applied
