"""The file ledger in the cluster's database (watchkeeper.files): a keeper that takes over
reads every outcome the previous leader wrote, so a file handed and done is never handed
again. Outcomes are written through the fenced writer (core/cluster/pgwriter.py), in
order with the run records; Logs/files.jsonl stays written as an export (`jq`, and
`watchkeeper requeue` looks quarantined files up there)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import psycopg

from watchkeeper.core.appender import Log
from watchkeeper.core.cluster.db import connect_sync
from watchkeeper.core.cluster.dsn import DatabaseUnavailable, unavailable
from watchkeeper.core.cluster.pgwriter import FencedWriter
from watchkeeper.core.ledger import Ledger

INSERT = (
    "INSERT INTO watchkeeper.files (cluster, entry_id, entry, epoch)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (cluster, entry_id) DO NOTHING"
)


class PgLedger(Ledger):
    def __init__(self, path: Path, writer: FencedWriter, log: Log) -> None:
        super().__init__(path, log)
        self.writer = writer
        self.log = log
        self._ids = itertools.count(1)
        self._loaded = False

    def load(self) -> None:
        """Every outcome of the cluster, and those written here but not there yet. With
        the database down, the first load raises DatabaseUnavailable; later ones keep
        what is known and say so."""
        writer = self.writer
        try:
            with connect_sync(writer.dsn) as conn:
                if conn.execute("SELECT to_regclass('watchkeeper.files') IS NULL").fetchone() == (
                    True,
                ):
                    rows: list[Any] = []
                else:
                    rows = conn.execute(
                        "SELECT entry FROM watchkeeper.files WHERE cluster = %s ORDER BY seq",
                        (writer.cluster,),
                    ).fetchall()
        except (psycopg.Error, DatabaseUnavailable) as error:
            reason = (
                error if isinstance(error, DatabaseUnavailable) else unavailable(writer.dsn, error)
            )
            if not self._loaded:
                raise DatabaseUnavailable(str(reason)) from None
            self.log.warning(f"file ledger not read again, keeping what is known: {reason}")
            return
        lines = [row[0] for row in rows] + [
            w.params[2] for w in writer.waiting() if w.sql == INSERT
        ]
        self.replay(lines)
        self._loaded = True

    def store_entry(self, text: str, label: str) -> bool:
        """Queued for the fenced writer; exported only while it is taken (leading)."""
        writer = self.writer
        entry_id = f"{writer.keeper_id}:{next(self._ids)}"
        return bool(writer.add(INSERT, (writer.cluster, entry_id, text), f"file ledger: {label}"))
