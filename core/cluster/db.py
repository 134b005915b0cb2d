"""Connections to the cluster's database: autocommit (each statement its own
transaction unless a block asks for one), a short connect timeout, and an error that names
the database (masked) instead of a traceback when it cannot be reached."""

from __future__ import annotations

import psycopg

from watchkeeper.core.cluster.dsn import unavailable

# libpq waits this long for a server that does not answer (a dead host, a full backlog):
# long enough for a busy server, short against a lease of seconds.
CONNECT_TIMEOUT = 5


async def connect(dsn: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )
    except psycopg.Error as error:
        raise unavailable(dsn, error) from None


def connect_sync(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    """For the quick CLI reads and the keeper's start, where nothing else runs yet."""
    try:
        return psycopg.Connection.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as error:
        raise unavailable(dsn, error) from None
