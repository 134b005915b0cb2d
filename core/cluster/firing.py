"""Firing in cluster mode: a due (job, slot) starts only once its row is in
watchkeeper.slots, inserted with the leader's epoch while that epoch still leads.

The slots due at one instant are claimed together, in one statement conditioned on
`watchkeeper.leads(cluster, epoch)`; only the ones it returns are submitted to the
keeper's runs. A slot whose row exists (another epoch fired it, before a failover) is
never fired again. A claim the database refuses for the epoch is recorded in
watchkeeper.rejections in the same statement and makes this keeper step down.

Local mode does not come here: core/firing.py's loop, with its readying ahead of the
slot, is untouched.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from watchkeeper.core.firing import Firing
from watchkeeper.core.host import Host
from watchkeeper.core.runs import Runs
from watchkeeper.core.runtime import JobRuntime, StartRequest
from watchkeeper.core.slots import Slot, Slots
from watchkeeper.core.triggers import EverySchedule, Schedule

# One statement: the fence (watchkeeper.leads, with the leader row locked so a takeover
# waits for this claim or this claim sees the takeover), the claims inserted only under
# it, a refusal recorded. It answers (whether the epoch leads, the run ids claimed).
_CLAIM = """
WITH fence AS (
    SELECT count(*) > 0 AS ok FROM (
        SELECT 1 FROM watchkeeper.leader
        WHERE cluster = %(cluster)s AND epoch = %(epoch)s FOR SHARE
    ) AS held
),
claimed AS (
    INSERT INTO watchkeeper.slots (cluster, job, slot, epoch, run_id)
    SELECT %(cluster)s, t.job, t.slot, %(epoch)s, t.run_id
    FROM unnest(%(jobs)s::text[], %(slots)s::timestamptz[], %(runs)s::text[])
         AS t(job, slot, run_id), fence
    WHERE fence.ok
    ON CONFLICT DO NOTHING
    RETURNING run_id
),
refused AS (
    INSERT INTO watchkeeper.rejections (cluster, epoch, keeper_id, what)
    SELECT %(cluster)s, %(epoch)s, %(keeper_id)s, %(what)s FROM fence WHERE NOT fence.ok
)
SELECT (SELECT ok FROM fence), coalesce((SELECT array_agg(run_id) FROM claimed), '{}')
"""

_LAST_SLOTS = """
SELECT job, extract(epoch FROM max(slot)) FROM watchkeeper.slots
WHERE cluster = %(cluster)s GROUP BY job
"""


class Fenced(Exception):
    """The database refused this keeper's epoch: another keeper leads."""


class Gate(Protocol):
    """What the claims ask of the role: who this keeper is, its epoch while it leads."""

    cluster: str
    keeper_id: str

    def leading(self) -> bool: ...

    @property
    def epoch(self) -> int | None: ...


@dataclass
class Claim:
    request: StartRequest
    key: datetime  # the slot as the cluster knows it


def slot_key(runtime: JobRuntime | None, slot: Slot) -> datetime:
    """The slot's identity across keepers. Cron slots are wall-clock instants every
    keeper computes alike; an interval's slots follow each keeper's own start, so they
    are put on a grid of the interval: two keepers never fire one period twice."""
    moment = slot.due_wall
    if slot.clock == "mono" and runtime is not None:
        interval = next(
            (s.interval for s in runtime.schedules if isinstance(s, EverySchedule)), 0.0
        )
        if interval >= 0.001:
            moment = math.floor(moment / interval + 1e-6) * interval
    return datetime.fromtimestamp(round(moment, 3), UTC)


def first_missed(schedule: Schedule, since: float, now: float) -> float | None:
    """The first slot of `schedule` after `since` that passed by `now` (wall seconds)."""
    if not schedule.missed_since(since, now):
        return None
    if isinstance(schedule, EverySchedule):
        step = schedule.interval
        return (math.floor(since / step + 1e-6) + 1) * step
    return schedule.first(since)


class Claims:
    """The statements; `conn` is a callable giving the live connection (it reconnects)."""

    def __init__(self, gate: Gate, conn: Callable[[], Awaitable[Any]], timeout: float) -> None:
        self.gate = gate
        self.conn = conn
        self.timeout = timeout

    async def claim(self, epoch: int, claims: list[Claim], what: str) -> set[str]:
        """The run ids whose slots this epoch now owns. Raises Fenced when the epoch no
        longer leads, DatabaseUnavailable (or a timeout) when the database is away."""
        params = {
            "cluster": self.gate.cluster,
            "epoch": epoch,
            "keeper_id": self.gate.keeper_id,
            "what": what,
            "jobs": [c.request.job for c in claims],
            "slots": [c.key for c in claims],
            "runs": [c.request.run_id for c in claims],
        }
        conn = await self.conn()
        cursor = await asyncio.wait_for(conn.execute(_CLAIM, params), self.timeout)
        row = await cursor.fetchone()
        if row is None or not row[0]:
            raise Fenced(f"epoch {epoch} no longer leads cluster {self.gate.cluster}")
        return set(row[1])

    async def last_slots(self) -> dict[str, float]:
        conn = await self.conn()
        cursor = await asyncio.wait_for(
            conn.execute(_LAST_SLOTS, {"cluster": self.gate.cluster}), self.timeout
        )
        return {str(job): float(moment) for job, moment in await cursor.fetchall()}


class ClaimingFiring(Firing):
    """The keeper's firing loop in cluster mode. `on_trouble(error)` hears of a claim
    that failed (Fenced: step down; anything else: the database is away)."""

    def __init__(
        self,
        host: Host,
        slots: Slots,
        runs: Runs,
        claims: Claims,
        on_trouble: Callable[[BaseException], None],
    ) -> None:
        super().__init__(host, slots, runs)
        self.claims = claims
        self.on_trouble = on_trouble
        self.unfired = 0  # slots that came due while leadership could not be proven
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def serve(self) -> None:
        loop, slots, host = asyncio.get_running_loop(), self.slots, self.host
        self._wake = wake = asyncio.Event()
        while not host.stopping:
            await self.fire_claimed()
            wake.clear()
            handle = loop.call_at(loop.time() + slots.sleep_for(), wake.set)
            await wake.wait()
            handle.cancel()

    def behind(self) -> bool:
        return not self.host.stopping and self.slots.sleep_for() <= 0

    async def fire_claimed(self) -> None:
        """Claim the slots due now, then request the runs of those claimed."""
        host = self.host
        batch: list[Claim] = []
        for due in self.slots.due(host.jobs, self.slots.now()):
            if host.state.is_paused(due.job):
                host.jobs[due.job].missed_while_paused += 1
                host.notifier.missed(due.job, "paused", due.due_wall)
                continue
            request = StartRequest(
                due.job, "schedule", due_mono=due.due_mono, due_wall=due.due_wall, wave=due.wave
            )
            batch.append(Claim(request, slot_key(host.jobs.get(due.job), due)))
        if batch:
            await self.submit_claimed(batch, f"claim {len(batch)} slot(s)")

    async def submit_claimed(self, batch: list[Claim], what: str) -> int:
        """Submit the runs whose slots the claim won; how many."""
        gate, host = self.claims.gate, self.host
        epoch = gate.epoch
        if epoch is None or not gate.leading():
            self._unfired(batch, "this keeper cannot prove it leads")
            return 0
        try:
            won = await self.claims.claim(epoch, batch, what)
        except Exception as error:  # Fenced, or the database is away: fire nothing
            self._unfired(batch, str(error) or type(error).__name__)
            self.on_trouble(error)
            return 0
        if host.stopping:
            return 0
        for claim in batch:
            if claim.request.run_id in won:
                host.submit(claim.request)
        self.runs.spawn()
        return len(won)

    def _unfired(self, batch: list[Claim], why: str) -> None:
        self.unfired += len(batch)
        jobs = ", ".join(sorted({claim.request.job for claim in batch}))
        self.host.log.error(f"cluster: {len(batch)} slot(s) not fired ({jobs}): {why}")

    async def catch_up(
        self, policy: str, last_runs: Mapping[str, float], during: str = "the failover"
    ) -> int:
        """After a takeover: per `catch_up`, one run for each job a slot of which passed
        with no row (nobody fired it) since the job's last slot row or, failing one, its
        last run (`last_runs`, wall seconds). How many were submitted."""
        if policy != "once":
            return 0
        last = {**last_runs, **await self.claims.last_slots()}
        now = self.host.clock.time()
        batch = list(self._missed(self.host.jobs.items(), last, now))
        if not batch:
            return 0
        for claim in batch:
            self.host.log.info(
                f"{claim.request.job}: slot {claim.key.isoformat()} passed during "
                f"{during}; catching up once"
            )
        return await self.submit_claimed(batch, f"catch up {len(batch)} slot(s)")

    def _missed(
        self, jobs: Iterable[tuple[str, JobRuntime]], last: Mapping[str, float], now: float
    ) -> Iterable[Claim]:
        for name, runtime in jobs:
            since = last.get(name)
            if since is None or not runtime.schedules or self.host.state.is_paused(name):
                continue
            moments = [first_missed(s, since, now) for s in runtime.schedules]
            found = [m for m in moments if m is not None]
            if found:
                moment = min(found)
                yield Claim(
                    StartRequest(name, "catch_up"), datetime.fromtimestamp(round(moment, 3), UTC)
                )
