"""The leader lease on a real PostgreSQL: campaign, renew, lapse and takeover (a new
epoch), fencing of an old epoch, a local deadline in wall time, exactly one winner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from conftest import finals, finish, history_lines, keeper_log, started_keeper, until

from watchkeeper.core.cluster.db import connect
from watchkeeper.core.cluster.firing import (
    Claim,
    ClaimingFiring,
    Claims,
    Fenced,
    first_missed,
    slot_key,
)
from watchkeeper.core.cluster.lease import Leadership, new_keeper_id
from watchkeeper.core.cluster.schema import ensure_schema
from watchkeeper.core.runtime import StartRequest
from watchkeeper.core.slots import Slot
from watchkeeper.core.triggers import EverySchedule

Make = Callable[..., Awaitable[Leadership]]


@pytest.fixture
async def make(pg_dsn: str) -> AsyncIterator[Make]:
    conns: list[psycopg.AsyncConnection[tuple[object, ...]]] = []

    async def leadership(lease: float = 2.0, **fields: object) -> Leadership:
        conn = await connect(pg_dsn)
        conns.append(conn)
        if len(conns) == 1:
            await ensure_schema(conn)
        keeper_id = new_keeper_id("host-a", 1000 + len(conns))
        values: dict[str, object] = {
            "conn": conn,
            "cluster": "ops",
            "keeper_id": keeper_id,
            "host": "host-a",
            "pid": 1000 + len(conns),
            "socket": f"/vault/Logs/keeper-{1000 + len(conns)}.sock",
            "lease": lease,
            **fields,
        }
        return Leadership(**values)  # type: ignore[arg-type]

    yield leadership
    for conn in conns:
        await conn.close()


async def leads(lease: Leadership, epoch: int) -> bool:
    cursor = await lease.conn.execute("SELECT watchkeeper.leads('ops', %s)", (epoch,))
    row = await cursor.fetchone()
    return bool(row[0])


async def lapse(lease: Leadership) -> None:
    """The lease's end moved to now, as if its holder had stopped renewing it."""
    await lease.conn.execute(
        "UPDATE watchkeeper.leader SET expires_at = clock_timestamp() - interval '1 ms'"
    )


async def test_campaign_renew_and_the_row_that_names_the_leader(make: Make) -> None:
    a = await make()
    assert await a.campaign()
    assert a.epoch == 1 and a.leading()
    first_deadline = a.deadline
    await asyncio.sleep(0.05)
    assert await a.renew()
    assert a.epoch == 1 and a.deadline > first_deadline
    info = await a.current()
    assert info is not None
    assert (info.epoch, info.keeper_id, info.pid, info.live) == (1, a.keeper_id, a.pid, True)
    assert info.socket == a.socket
    assert await leads(a, 1)


async def test_a_second_keeper_cannot_take_a_live_lease(make: Make) -> None:
    a, b = await make(), await make()
    assert await a.campaign()
    assert not await b.campaign()
    assert b.epoch is None and not b.leading()


async def test_a_lapsed_lease_is_taken_over_with_a_new_epoch_and_the_old_one_is_fenced(
    make: Make,
) -> None:
    a, b = await make(), await make()
    assert await a.campaign()
    await lapse(a)
    # Lapsed, nobody took over: the epoch still fences nothing out (what the leader kept
    # while the database was down may be written), but a standby may take over now.
    assert await leads(a, 1)
    assert await b.campaign()
    assert b.epoch == 2
    assert await leads(b, 2) and not await leads(b, 1)
    # The old leader's renewal is refused: its epoch is gone, it leads no more.
    assert not await a.renew()
    assert a.epoch is None and not a.leading()
    info = await b.current()
    assert info is not None and info.keeper_id == b.keeper_id


async def test_release_lets_a_standby_take_over_at_once(make: Make) -> None:
    a, b = await make(lease=60.0), await make(lease=60.0)
    assert await a.campaign()
    assert not await b.campaign()
    await a.release()
    assert not a.leading()
    assert await b.campaign()
    assert b.epoch == 2


async def test_the_local_deadline_is_wall_time_and_ends_leadership_without_the_database(
    make: Make,
) -> None:
    wall = [1_000_000.0]
    a = await make(lease=9.0, wall=lambda: wall[0])
    assert await a.campaign()
    assert a.deadline == pytest.approx(1_000_000.0 + 9.0 - a.margin)
    wall[0] += 9.0 - a.margin - 0.01
    assert a.leading()
    # A suspend: the wall clock jumped while nothing ran; nobody asked the database.
    wall[0] += 0.02
    assert not a.leading()
    # Renewing (same epoch: nobody took over) makes it lead again.
    assert await a.renew()
    assert a.leading() and a.epoch == 1


async def test_concurrent_campaigns_have_exactly_one_winner(make: Make) -> None:
    keepers = [await make() for _ in range(8)]
    for _ in range(3):
        won = await asyncio.gather(*(keeper.campaign() for keeper in keepers))
        assert sum(won) == 1
        winner = keepers[won.index(True)]
        assert await leads(winner, winner.epoch or 0)
        await lapse(winner)
        winner.drop()
    epochs = [keeper.epoch for keeper in keepers]
    assert epochs == [None] * len(keepers)
    info = await keepers[0].current()
    assert info is not None and info.epoch == 3


async def test_heartbeat_rejections_and_leave(make: Make) -> None:
    a = await make()
    await a.heartbeat()
    await a.heartbeat()
    await a.reject(7, "claim 2 slot(s)")
    cursor = await a.conn.execute("SELECT keeper_id, socket FROM watchkeeper.keepers")
    assert await cursor.fetchall() == [(a.keeper_id, a.socket)]
    cursor = await a.conn.execute("SELECT epoch, keeper_id, what FROM watchkeeper.rejections")
    assert await cursor.fetchall() == [(7, a.keeper_id, "claim 2 slot(s)")]
    await a.leave()
    cursor = await a.conn.execute("SELECT count(*) FROM watchkeeper.keepers")
    assert await cursor.fetchone() == (0,)


def claims_of(lease: Leadership) -> Claims:
    async def conn() -> object:
        return lease.conn

    return Claims(lease, conn, 5.0)


def claim(job: str, second: int) -> Claim:
    return Claim(StartRequest(job, "schedule"), datetime.fromtimestamp(1_800_000_000 + second, UTC))


async def test_slots_are_claimed_once_and_a_fenced_epoch_claims_nothing(make: Make) -> None:
    a, b = await make(), await make()
    assert await a.campaign()
    first = [claim("tick", 0), claim("tock", 0)]
    won = await claims_of(a).claim(1, first, "claim 2 slot(s)")
    assert won == {c.request.run_id for c in first}
    # The same slots again (another keeper's copy): refused by their rows, one new one won.
    again = [claim("tick", 0), claim("tock", 0), claim("tick", 1)]
    won = await claims_of(a).claim(1, again, "claim 3 slot(s)")
    assert won == {again[2].request.run_id}
    await lapse(a)
    assert await b.campaign()
    # The old epoch is fenced: nothing inserted, the refusal recorded, Fenced raised.
    with pytest.raises(Fenced):
        await claims_of(a).claim(1, [claim("tick", 2)], "claim 1 slot(s)")
    cursor = await a.conn.execute("SELECT job, epoch FROM watchkeeper.slots ORDER BY slot, job")
    assert await cursor.fetchall() == [("tick", 1), ("tock", 1), ("tick", 1)]
    cursor = await a.conn.execute("SELECT epoch, keeper_id, what FROM watchkeeper.rejections")
    assert await cursor.fetchall() == [(1, a.keeper_id, "claim 1 slot(s)")]
    assert await claims_of(b).claim(2, [claim("tick", 2)], "claim 1 slot(s)")
    assert await claims_of(b).last_slots() == {
        "tick": 1_800_000_002.0,
        "tock": 1_800_000_000.0,
    }


def test_interval_slots_sit_on_the_intervals_grid_and_catch_up_finds_the_first_missed() -> None:
    every = EverySchedule(10.0)
    runtime = SimpleNamespace(schedules=[every])
    slot = Slot("tick", "mono", 5.0, due_mono=5.0, due_wall=1_800_000_017.3)
    assert slot_key(runtime, slot) == datetime.fromtimestamp(1_800_000_010, UTC)  # type: ignore[arg-type]
    assert first_missed(every, 1_800_000_010.0, 1_800_000_019.0) is None
    assert first_missed(every, 1_800_000_010.0, 1_800_000_031.0) == 1_800_000_020.0


async def test_a_keeper_past_its_wall_deadline_claims_and_starts_nothing(
    make: Make, make_vault: Callable[[str], Path]
) -> None:
    """The local gate alone, the database willing: once the wall clock passes the last
    renewal + lease - margin (a suspend, a freeze), nothing is claimed or started."""
    vault = make_vault('[jobs.tick]\ncommand = ["true"]\nevery = "1h"\n')
    wall = [time.time()]
    lease = await make(lease=6.0, wall=lambda: wall[0])
    assert await lease.campaign()
    keeper = await started_keeper(vault)
    troubles: list[BaseException] = []

    async def conn() -> object:
        return lease.conn

    firing = ClaimingFiring(
        keeper, keeper.slots, keeper.runs, Claims(lease, conn, 5.0), troubles.append
    )
    try:
        wall[0] += 6.0 - lease.margin  # the deadline, reached by the wall clock alone
        late = Claim(StartRequest("tick", "schedule"), datetime.now(UTC))
        assert await firing.submit_claimed([late], "claim 1 slot(s)") == 0
        assert firing.unfired == 1 and not troubles
        cursor = await lease.conn.execute("SELECT count(*) FROM watchkeeper.slots")
        assert await cursor.fetchone() == (0,)
        assert "1 slot(s) not fired (tick): this keeper cannot prove it leads" in keeper_log(vault)
        # Renewed (same epoch, nobody took over): the next claim goes through and runs.
        assert await lease.renew()
        again = Claim(StartRequest("tick", "schedule"), datetime.now(UTC))
        assert await firing.submit_claimed([again], "claim 1 slot(s)") == 1
        await until(lambda: any(r["id"] == again.request.run_id for r in finals(vault)))
        assert not any(r["id"] == late.request.run_id for r in history_lines(vault))
    finally:
        await finish(keeper)
