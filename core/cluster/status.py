"""What `watchkeeper cluster status` and the console's Workers screen show: the cluster's
leader, its standbys, its workers and the queues, read from the database in one go.

Ages and the lease left are computed by the database's clock (`clock_timestamp()`), the
one every leadership decision is judged by, so a host whose clock drifts reads the same
numbers as any other. The JSON shape (ClusterStatus) is stable: README "Beyond one
machine" documents it."""

# No `from __future__ import annotations`: the TypedDicts' keys are read at run time.
from datetime import datetime
from typing import Any, TypedDict

from watchkeeper.core.cluster.dsn import masked

# A keeper renews every lease/3 and says it is alive as often: one not seen for three
# leases has stopped (or is frozen) and is no longer listed as a standby.
STANDBY_LEASES = 3.0
# A worker whose heartbeat is older than this is lost: its runs are closed `interrupted`
# (DESIGN: "when its heartbeat lapses (<= 30 s)").
WORKER_LAPSE = 30.0
# Rows of workers gone longer than this are not listed at all (a restarted worker has a
# new id: the old row would otherwise stay forever).
WORKER_FORGET = 3600.0


class LeaderJson(TypedDict):
    keeper_id: str
    host: str
    pid: int
    socket: str
    epoch: int
    acquired_at: str
    expires_at: str
    lease_left_s: float
    """Negative once the lease lapsed (or was released) and nobody has taken over yet."""
    leads: bool
    """The lease is live: this keeper leads now. The row stays after a lapse, naming
    the last leader and the epoch the next one will pass."""


class KeeperJson(TypedDict):
    keeper_id: str
    host: str
    pid: int
    socket: str
    started_at: str
    seen_age_s: float


class RemoteRunJson(TypedDict):
    run_id: str
    job: str
    state: str
    started_at: str | None


class WorkerJson(TypedDict):
    worker_id: str
    host: str
    pid: int
    labels: list[str]
    concurrency: int
    started_at: str
    heartbeat_age_s: float
    alive: bool
    runs: list[RemoteRunJson]


class QueueJson(TypedDict):
    queue: str
    labels: list[str]
    todo: int
    doing: int


class ClusterStatus(TypedDict):
    cluster: str
    database: str
    now: str
    leader: LeaderJson | None
    standbys: list[KeeperJson]
    workers: list[WorkerJson]
    queues: list[QueueJson]


_LEADER = """
SELECT keeper_id, host, pid, socket, epoch, acquired_at, expires_at,
       extract(epoch FROM expires_at - clock_timestamp())::float8
FROM watchkeeper.leader WHERE cluster = %s
"""
_KEEPERS = """
SELECT keeper_id, host, pid, socket, started_at,
       extract(epoch FROM clock_timestamp() - seen_at)::float8 AS age
FROM watchkeeper.keepers
WHERE cluster = %s AND seen_at > clock_timestamp() - make_interval(secs => %s)
ORDER BY started_at, keeper_id
"""
_WORKERS = """
SELECT worker_id, host, pid, labels, concurrency, started_at,
       extract(epoch FROM clock_timestamp() - seen_at)::float8 AS age
FROM watchkeeper.workers
WHERE cluster = %s AND seen_at > clock_timestamp() - make_interval(secs => %s)
ORDER BY host, started_at, worker_id
"""
_IN_FLIGHT = """
SELECT worker_id, run_id, job, state, started_at
FROM watchkeeper.remote_runs
WHERE cluster = %s AND state <> 'ended' AND worker_id IS NOT NULL
ORDER BY started_at NULLS LAST, run_id
"""
# A cluster's queues: those its open runs were deferred to (remote_runs says with which
# labels), and any of procrastinate's named for it (core/cluster/queue.py: wk.<cluster>.
# <labels joined by +>); procrastinate's table is shared by every cluster in the database.
_QUEUES = """
SELECT queue, (array_agg(spec -> 'runs_on'))[1]
FROM watchkeeper.remote_runs
WHERE cluster = %s AND state <> 'ended'
GROUP BY queue ORDER BY queue
"""
_DEPTH = """
SELECT queue_name, count(*) FILTER (WHERE status = 'todo'),
       count(*) FILTER (WHERE status = 'doing')
FROM procrastinate_jobs
WHERE status IN ('todo', 'doing') AND (queue_name = ANY(%s) OR starts_with(queue_name, %s))
GROUP BY queue_name
"""


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _age(value: object) -> float:
    return round(float(value), 3) if isinstance(value, int | float) else 0.0


def read_status(conn: Any, cluster: str, dsn: str, lease: float) -> ClusterStatus:
    """The cluster's state as one consistent read (a REPEATABLE READ snapshot). `conn`: a
    psycopg Connection (core.cluster.db.connect_sync); `dsn` is only shown, masked. A
    database no keeper has prepared yet reads as an empty cluster."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        status: ClusterStatus = {
            "cluster": cluster,
            "database": masked(dsn),
            "now": _iso(now),
            "leader": None,
            "standbys": [],
            "workers": [],
            "queues": [],
        }
        present = conn.execute(
            "SELECT to_regclass('watchkeeper.leader') IS NOT NULL,"
            " to_regclass('procrastinate_jobs') IS NOT NULL"
        ).fetchone()
        if not present[0]:
            return status
        status["leader"] = leader = _leader(conn, cluster)
        leader_id = leader["keeper_id"] if leader and leader["leads"] else None
        status["standbys"] = [
            keeper
            for keeper in _keepers(conn, cluster, lease * STANDBY_LEASES)
            if keeper["keeper_id"] != leader_id
        ]
        status["workers"] = _workers(conn, cluster)
        status["queues"] = _queues(conn, cluster, procrastinate=bool(present[1]))
    return status


def _leader(conn: Any, cluster: str) -> LeaderJson | None:
    row = conn.execute(_LEADER, (cluster,)).fetchone()
    if row is None:
        return None
    keeper_id, host, pid, socket, epoch, acquired, expires, left = row
    return {
        "keeper_id": keeper_id,
        "host": host,
        "pid": int(pid),
        "socket": socket,
        "epoch": int(epoch),
        "acquired_at": _iso(acquired),
        "expires_at": _iso(expires),
        "lease_left_s": _age(left),
        "leads": _age(left) > 0,
    }


def _keepers(conn: Any, cluster: str, within: float) -> list[KeeperJson]:
    return [
        {
            "keeper_id": keeper_id,
            "host": host,
            "pid": int(pid),
            "socket": socket,
            "started_at": _iso(started),
            "seen_age_s": _age(age),
        }
        for keeper_id, host, pid, socket, started, age in conn.execute(
            _KEEPERS, (cluster, within)
        ).fetchall()
    ]


def _workers(conn: Any, cluster: str) -> list[WorkerJson]:
    runs: dict[str, list[RemoteRunJson]] = {}
    for worker_id, run_id, job, state, started in conn.execute(_IN_FLIGHT, (cluster,)):
        runs.setdefault(worker_id, []).append(
            {
                "run_id": run_id,
                "job": job,
                "state": state,
                "started_at": _iso(started) if started is not None else None,
            }
        )
    return [
        {
            "worker_id": worker_id,
            "host": host,
            "pid": int(pid),
            "labels": list(labels),
            "concurrency": int(concurrency),
            "started_at": _iso(started),
            "heartbeat_age_s": _age(age),
            "alive": _age(age) <= WORKER_LAPSE,
            "runs": runs.get(worker_id, []),
        }
        for worker_id, host, pid, labels, concurrency, started, age in conn.execute(
            _WORKERS, (cluster, WORKER_FORGET)
        ).fetchall()
    ]


def _queues(conn: Any, cluster: str, procrastinate: bool) -> list[QueueJson]:
    queues: dict[str, QueueJson] = {}
    for queue, runs_on in conn.execute(_QUEUES, (cluster,)).fetchall():
        labels = [str(label) for label in runs_on] if isinstance(runs_on, list) else []
        queues[queue] = {"queue": queue, "labels": labels, "todo": 0, "doing": 0}
    if procrastinate:
        prefix = f"wk.{cluster}."
        for name, todo, doing in conn.execute(_DEPTH, (list(queues), prefix)).fetchall():
            labels = name.removeprefix(prefix).split("+") if name.startswith(prefix) else []
            queues.setdefault(name, {"queue": name, "labels": labels, "todo": 0, "doing": 0})
            queues[name]["todo"], queues[name]["doing"] = int(todo), int(doing)
    return sorted(queues.values(), key=lambda queue: queue["queue"])
