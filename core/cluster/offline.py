"""What the CLI writes to the cluster's database itself, no keeper of the cluster being
there to ask: the pauses (`pause`, `resume`) and a quarantined file put back in line
(`requeue`). The leader reads both from the database (at its start, on SIGHUP), so a
keeper that leads later, on any host, sees them; Logs/ gets the same change as its
export, as a leader writes it.

Neither write is fenced by an epoch: they are an operator's, not a leader's, and a
leader that was paused cannot have made them.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from watchkeeper.core.cluster import reads
from watchkeeper.core.cluster.db import connect_sync
from watchkeeper.core.cluster.dsn import unavailable
from watchkeeper.core.cluster.pgledger import INSERT
from watchkeeper.core.cluster.pgstore import STATE_UPSERT
from watchkeeper.core.config_cluster import ClusterConfig
from watchkeeper.core.ledger import Ledger
from watchkeeper.core.state import RuntimeState, load_state, save_state

_EPOCH = "SELECT coalesce(max(epoch), 0) FROM watchkeeper.leader WHERE cluster = %s"


def cluster_state(cluster: ClusterConfig, vault: Path) -> RuntimeState:
    """The cluster's pauses; before any was written, the vault's Logs/state.toml (what a
    leader starts from then too). DatabaseUnavailable, masked."""
    data = reads.answer(cluster, reads.pause_state)
    return reads.runtime_state(data) or load_state(vault)


def save_cluster_state(cluster: ClusterConfig, vault: Path, state: RuntimeState) -> None:
    """The pauses into the database first (a database down changes nothing), then the
    Logs/state.toml export."""
    data = {"paused": state.paused, "paused_jobs": sorted(state.paused_jobs), "theme": state.theme}

    def write(conn: Any, name: str) -> None:
        _schema(conn, cluster)
        conn.execute(STATE_UPSERT, (name, Jsonb(data)))

    reads.answer(cluster, write)
    save_state(vault, state)


class ClusterLedger(Ledger):
    """The cluster's file ledger as `requeue` needs it: read from watchkeeper.files, an
    outcome recorded there (then in the Logs/files.jsonl export). Opened with a
    connection it keeps until close()."""

    def __init__(self, path: Path, cluster: ClusterConfig) -> None:
        super().__init__(path)
        self.cluster = cluster
        self._who = f"cli:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._conn: Any = connect_sync(cluster.database)

    def load(self) -> None:
        rows: list[Any] = []
        if reads.has_schema(self._conn):
            rows = self._execute(
                "SELECT entry FROM watchkeeper.files WHERE cluster = %s ORDER BY seq",
                (self.cluster.name,),
            ).fetchall()
        self.replay(line for (line,) in rows)

    def store_entry(self, text: str, label: str) -> bool:
        """Written to the database at once (a refusal raises before anything changes)."""
        self._count += 1
        _schema(self._conn, self.cluster)
        epoch = self._execute(_EPOCH, (self.cluster.name,)).fetchone()[0]
        self._execute(INSERT, (self.cluster.name, f"{self._who}:{self._count}", text, epoch))
        return True

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        try:
            return self._conn.execute(sql, params)
        except psycopg.Error as error:
            raise unavailable(self.cluster.database, error) from None

    def close(self) -> None:
        self._conn.close()


def _schema(conn: Any, cluster: ClusterConfig) -> None:
    """No keeper of the cluster ever started: nothing to write into yet."""
    if not reads.has_schema(conn):
        raise ValueError(
            f"cluster {cluster.name} has no tables yet: start a keeper of it once"
            " (`watchkeeper --daemon`) before changing its state"
        )
