"""The cluster schema on a real PostgreSQL: created once, idempotent, safe when keepers
start together, and a newer database is refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from watchkeeper.core.cluster.schema import LATEST, SchemaTooNew, ensure_schema


async def test_schema_is_created_once_even_by_keepers_starting_together(pg_dsn: str) -> None:
    async def start() -> list[int]:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            return await ensure_schema(conn)

    results = await asyncio.gather(*(start() for _ in range(5)))
    assert sorted(results) == [[]] * 4 + [list(range(1, LATEST + 1))]
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        assert await ensure_schema(conn) == []
        cursor = await conn.execute("SELECT version FROM watchkeeper.schema_version")
        assert [row[0] for row in await cursor.fetchall()] == list(range(1, LATEST + 1))
        cursor = await conn.execute("SELECT to_regclass('watchkeeper.runs') IS NOT NULL")
        assert (await cursor.fetchone()) == (True,)


async def test_a_database_migrated_by_a_newer_watchkeeper_is_refused(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await ensure_schema(conn)
        await conn.execute("INSERT INTO watchkeeper.schema_version VALUES (%s)", (LATEST + 1,))
        await conn.commit()
        with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}"):
            await ensure_schema(conn)
