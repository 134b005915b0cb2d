"""The PostgreSQL Store on a real PostgreSQL: records, the file ledger, quota starts and
pauses written fenced on the keeper's epoch, kept while the database restarts, and read
back by a new keeper and by the CLI for the whole cluster."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import run_cli
from pgserver import PgServer

from watchkeeper.core.cluster.pgstore import PgStore
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.config import Config, load_config
from watchkeeper.core.history import Query, RunRecord
from watchkeeper.core.seams import Store
from watchkeeper.core.store import JsonlStore
from watchkeeper.core.vault import ensure_layout

CLUSTER = "ops"


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, message: str) -> None:
        self.lines.append("error: " + message)

    def warning(self, message: str) -> None:
        self.lines.append("warning: " + message)


def vault_config(tmp_path: Path, dsn: str, name: str = "vault") -> Config:
    vault = tmp_path / name
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(
        f'[cluster]\ndatabase = "{dsn}"\nname = "{CLUSTER}"\n\n'
        '[jobs.sweep]\ncommand = ["true"]\nevery = "5m"\n\n'
        '[jobs.inbox]\ncommand = ["true"]\non_files = ["Inbox/*.md"]\n'
    )
    return load_config(vault / "watchkeeper.toml")


def sql(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


async def prepared(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await ensure_schema(conn)


def lead(dsn: str, epoch: int, seconds: float = 3600) -> None:
    """Epoch `epoch` leads CLUSTER for `seconds` (what core/cluster/lease.py records)."""
    sql(
        dsn,
        "INSERT INTO watchkeeper.leader VALUES"
        " (%s, %s, 'k', 'h', 1, 's', clock_timestamp(), clock_timestamp() + %s)"
        " ON CONFLICT (cluster) DO UPDATE SET epoch = EXCLUDED.epoch,"
        " expires_at = EXCLUDED.expires_at",
        (CLUSTER, epoch, timedelta(seconds=seconds)),
    )


def record(
    run_id: str, status: str = "running", job: str = "sweep", ago: float = 1, ms: int = 250
) -> RunRecord:
    started = datetime.now(UTC) - timedelta(seconds=ago)
    final = status != "running"
    return RunRecord(
        id=run_id,
        job=job,
        project="vault",
        started_at=started,
        status=status,
        trigger="schedule",
        host="here",
        completed_at=started + timedelta(milliseconds=250) if final else None,
        duration_ms=ms if final else None,
        exit_code=0 if status == "success" else (1 if final else None),
    )


def store_of(config: Config, keeper: str, epoch: int | None) -> tuple[PgStore, Log]:
    log = Log()
    store = PgStore(config, log, keeper)
    store.epoch = epoch
    store.attach(asyncio.get_running_loop())
    return store, log


async def drained(store: PgStore, timeout: float = 60) -> None:
    await asyncio.wait_for(store.drained(), timeout)


async def test_a_running_line_then_its_final_line_leave_one_row_the_final(
    tmp_path: Path, pg_dsn: str
) -> None:
    await prepared(pg_dsn)
    lead(pg_dsn, 1)
    config = vault_config(tmp_path, pg_dsn)
    store, log = store_of(config, "a", 1)
    seam: Store = store  # the keeper's seam, as core/seams.py declares it
    running = record("r1")
    seam.history.append(running)
    await drained(store)
    assert [r.id for r in store.open_runs(datetime.now(UTC) - timedelta(days=1))] == ["r1"]
    final = record("r1", "success")
    final.started_at = running.started_at
    store.history.append(final)
    store.history.append(running)  # written again late (a retried batch): undoes nothing
    await drained(store)
    rows = sql(pg_dsn, "SELECT run_id, status, epoch, record FROM watchkeeper.runs")
    assert rows == [("r1", "success", 1, final.to_json())]
    assert store.open_runs(datetime.now(UTC) - timedelta(days=1)) == []
    assert [r.to_json() for r in store.recent_runs(Query(limit=10))] == [final.to_json()]
    store.close()
    # The leader's JSONL export: both lines, as a one-host keeper writes them.
    lines = [
        json.loads(line)
        for path in sorted((config.vault / "Logs" / "history").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [(line["id"], line["status"]) for line in lines] == [
        ("r1", "running"),
        ("r1", "success"),
        ("r1", "running"),
    ]
    assert not [line for line in log.lines if line.startswith("error")]


async def test_a_killed_leaders_lines_only_in_the_export_are_taken_up_by_the_next(
    tmp_path: Path, pg_dsn: str
) -> None:
    """kill -9 between the JSONL export's write and the database's transaction: the next
    leader reads the export too, so the run that ended there is recorded with that end
    (not closed `interrupted` over it) and the run that was only started there is open."""
    await prepared(pg_dsn)
    lead(pg_dsn, 2)
    config = vault_config(tmp_path, pg_dsn)
    export = JsonlStore(config.vault, Log())
    done = record("r-done")
    export.history.append(done)
    ended = record("r-done", "success")
    ended.started_at = done.started_at
    export.history.append(ended)
    export.history.append(record("r-open", ago=2))
    export.close()
    store, log = store_of(config, "next", 2)
    assert [r.id for r in store.open_runs(datetime.now(UTC) - timedelta(days=1))] == ["r-open"]
    await drained(store)
    rows = sql(pg_dsn, "SELECT run_id, status, epoch FROM watchkeeper.runs")
    assert rows == [("r-done", "success", 2)]
    store.close()
    assert not [line for line in log.lines if line.startswith("error")]


async def test_a_stale_epoch_changes_nothing_and_is_recorded_as_a_rejection(
    tmp_path: Path, pg_dsn: str
) -> None:
    await prepared(pg_dsn)
    lead(pg_dsn, 1)
    config = vault_config(tmp_path, pg_dsn)
    old, _ = store_of(config, "old", 1)
    old.history.append(record("r1"))
    await drained(old)
    lead(pg_dsn, 2)  # a standby took over while `old` was paused
    fenced: list[int] = []
    old.fenced_callback = fenced.append
    old.history.append(record("r1", "success"))
    old.history.append(record("r2", "failure"))
    old.ledger.record("inbox", "Inbox/a.md", "h1", "success", "r2")
    await drained(old)
    assert fenced == [1]
    assert sql(pg_dsn, "SELECT run_id, status, epoch FROM watchkeeper.runs") == [
        ("r1", "running", 1)
    ]
    assert sql(pg_dsn, "SELECT count(*) FROM watchkeeper.files") == [(0,)]
    rejections = sql(pg_dsn, "SELECT cluster, epoch, keeper_id, what FROM watchkeeper.rejections")
    assert len(rejections) == 1
    cluster, epoch, keeper, what = rejections[0]
    assert (cluster, epoch, keeper) == (CLUSTER, 1, "old")
    assert "run r1 of sweep (success)" in str(what) and "Inbox/a.md" in str(what)
    # Not leading at all (epoch None): refused here, the database never asked.
    old.epoch = None
    old.history.append(record("r3", "success"))
    assert old.writer.waiting() == []
    old.close()
    assert sql(pg_dsn, "SELECT count(*) FROM watchkeeper.runs WHERE run_id = 'r3'") == [(0,)]


async def test_writes_queued_across_a_database_restart_land_exactly_once(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    await prepared(pg_dsn)
    lead(pg_dsn, 1)
    config = vault_config(tmp_path, pg_dsn)
    store, log = store_of(config, "a", 1)
    ids: list[str] = []

    def one() -> None:
        run_id = f"r{len(ids):04d}"
        ids.append(run_id)
        store.history.append(record(run_id))
        store.history.append(record(run_id, "success"))
        store.ledger.record("inbox", f"Inbox/{run_id}.md", run_id, "success", run_id)

    for _ in range(20):
        one()
    restart = threading.Thread(target=pg_server.restart)
    restart.start()
    while restart.is_alive() or len(ids) < 60:
        one()
        await asyncio.sleep(0.02)
    restart.join()
    for _ in range(20):
        one()
    await drained(store)
    rows = sql(pg_dsn, "SELECT run_id, status FROM watchkeeper.runs ORDER BY run_id")
    assert rows == [(run_id, "success") for run_id in ids]
    entries = sql(pg_dsn, "SELECT entry FROM watchkeeper.files ORDER BY seq")
    assert [json.loads(str(e[0]))["run"] for e in entries] == ids
    down = [line for line in log.lines if "unreachable" in line]
    assert down and "keeping" in down[0], log.lines
    assert any("back" in line for line in log.lines), log.lines
    store.close()


async def test_a_file_handed_by_one_keeper_is_never_handed_by_the_next_leader(
    tmp_path: Path, pg_dsn: str
) -> None:
    await prepared(pg_dsn)
    lead(pg_dsn, 1)
    config = vault_config(tmp_path, pg_dsn)
    first, _ = store_of(config, "first", 1)
    first.ledger.load()
    first.ledger.record("inbox", "Inbox/a.md", "h1", "success", "r1")
    first.ledger.record("inbox", "Inbox/b.md", "h2", "failure", "r2")
    await drained(first)
    lead(pg_dsn, 2)  # the first keeper's lease lapsed; the second took over
    second, _ = store_of(config, "second", 2)
    second.ledger.load()
    assert not second.ledger.wants("inbox", "Inbox/a.md", "h1")
    assert second.ledger.wants("inbox", "Inbox/a.md", "changed")  # new content: a new file
    state = second.ledger.state("inbox", "Inbox/b.md", "h2")
    assert state is not None and state.failures == 1 and not state.done
    # The fenced first keeper finishes b late: refused, so the second still hands it.
    fenced: list[int] = []
    first.fenced_callback = fenced.append
    first.ledger.record("inbox", "Inbox/b.md", "h2", "success", "r2")
    await drained(first)
    assert fenced == [1]
    second.ledger.record("inbox", "Inbox/b.md", "h2", "success", "r3")
    await drained(second)
    third, _ = store_of(config, "third", None)
    third.ledger.load()
    assert not third.ledger.wants("inbox", "Inbox/b.md", "h2")
    assert sql(pg_dsn, "SELECT entry::json->>'run' FROM watchkeeper.files ORDER BY seq") == [
        ("r1",),
        ("r2",),
        ("r3",),
    ]
    for store in (first, second, third):
        store.close()


async def test_quota_starts_pauses_and_retention_carry_over_to_a_new_keeper(
    tmp_path: Path, pg_dsn: str
) -> None:
    await prepared(pg_dsn)
    lead(pg_dsn, 1)
    config = vault_config(tmp_path, pg_dsn)
    first, _ = store_of(config, "first", 1)
    assert first.load_state().paused_jobs == set()
    first.history.append(record("ran", "success", ago=60))
    first.history.append(record("refused", "skipped", ago=50))
    first.history.append(record("old", "success", ago=2 * 3600))
    first.history.append(record("ancient", "success", ago=40 * 86400))
    first.update_state(lambda state: state.paused_jobs.add("sweep"))
    await drained(first)
    first.close()
    # A keeper that takes over later, on another host: nothing of this one's Logs/.
    (config.vault / "Logs" / "state.toml").unlink()
    second, _ = store_of(config, "second", 2)
    assert second.load_state().paused_jobs == {"sweep"}
    now = time.time()
    assert [job for job, _ in second.starts_since(now - 3600)] == ["sweep"]
    lead(pg_dsn, 2)
    second.prune(30, datetime.now(UTC).date())
    await drained(second)
    assert sql(pg_dsn, "SELECT run_id FROM watchkeeper.runs ORDER BY run_id") == [
        ("old",),
        ("ran",),
        ("refused",),
    ]
    second.close()


def cluster_vault(tmp_path: Path, dsn: str) -> Path:
    config = vault_config(tmp_path, dsn)
    return config.vault


async def _fill(config: Config, dsn: str) -> None:
    await prepared(dsn)
    lead(dsn, 1)
    store, _ = store_of(config, "a", 1)
    runs = (("a1", "success", 100), ("a2", "failure", 300), ("a3", "success", 200))
    for age, (run_id, status, ms) in enumerate(reversed(runs)):
        store.history.append(record(run_id, status, ms=ms, ago=10 + age))
    store.history.append(record("b1", "running", job="inbox"))
    await drained(store)
    store.close()


async def test_history_and_stats_read_the_clusters_database(tmp_path: Path, pg_dsn: str) -> None:
    config = vault_config(tmp_path, pg_dsn)
    await _fill(config, pg_dsn)
    # This host's export is gone: whatever the CLI shows comes from the database.
    for path in (config.vault / "Logs" / "history").glob("*.jsonl"):
        path.unlink()
    vault = str(config.vault)
    done = await asyncio.to_thread(run_cli, "history", "--json", "--vault", vault)
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["status"]) for r in json.loads(done.stdout)] == [
        ("b1", "running"),
        ("a3", "success"),
        ("a2", "failure"),
        ("a1", "success"),
    ]
    done = await asyncio.to_thread(
        run_cli, "history", "--json", "--status", "success", "--job", "sweep", "--vault", vault
    )
    assert [r["id"] for r in json.loads(done.stdout)] == ["a3", "a1"]
    done = await asyncio.to_thread(run_cli, "stats", "--json", "--vault", vault)
    assert done.returncode == 0, done.stderr
    sweep = json.loads(done.stdout)["jobs"]["sweep"]
    assert (sweep["runs"], sweep["counts"]["success"], sweep["counts"]["failure"]) == (3, 2, 1)
    assert (sweep["p50_ms"], sweep["p95_ms"], sweep["last_run"]["id"]) == (200, 300, "a3")
    assert sweep["success_rate"] == pytest.approx(2 / 3)
    assert "inbox" not in json.loads(done.stdout)["jobs"]  # still running: no final yet
    done = await asyncio.to_thread(run_cli, "jobs", "--json", "--vault", vault)
    assert done.returncode == 0, done.stderr
    jobs = {job["name"]: job for job in json.loads(done.stdout)}
    assert jobs["sweep"]["last"]["id"] == "a3" and jobs["inbox"]["last"] is None
    done = await asyncio.to_thread(run_cli, "--status", "--json", "--vault", vault)
    status = json.loads(done.stdout)
    assert (status["source"], status["today"]) == ("database", {"ok": 2, "failed": 1})


def test_a_database_down_is_exit_2_naming_it_with_the_password_masked(tmp_path: Path) -> None:
    dsn = f"postgresql://watch:s3cret-pw@/nothing?host={tmp_path / 'no-server'}"
    vault = str(cluster_vault(tmp_path, dsn))
    commands: list[list[str]] = [["history"], ["stats", "--json"], ["jobs"], ["--status"]]
    for args in commands:
        done = run_cli(*args, "--vault", vault)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "s3cret-pw" not in done.stdout + done.stderr, args
        assert "postgresql://watch:***@/nothing" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, args
