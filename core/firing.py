"""The scheduling loop: sleep until the nearest slot or until something (run-now, pause,
a finished run, a file) wakes it, then request the runs of the slots that are due. No
tick. Slots say when (core/slots.py); Runs do the rest (core/runs.py)."""

from __future__ import annotations

import asyncio

from watchkeeper.core.host import Host
from watchkeeper.core.runs import Runs
from watchkeeper.core.runtime import StartRequest
from watchkeeper.core.slots import Slots


class Firing:
    def __init__(self, host: Host, slots: Slots, runs: Runs) -> None:
        self.host = host
        self.slots = slots
        self.runs = runs
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def behind(self) -> bool:
        """Slots are due that the loop has not fired yet."""
        return not self.host.stopping and self.slots.sleep_for() <= 0

    async def serve(self) -> None:
        """Fire due slots until the keeper stops."""
        loop, slots, host = asyncio.get_running_loop(), self.slots, self.host
        self._wake = wake = asyncio.Event()
        while not host.stopping:
            self.fire_due()
            delay, lead = slots.sleep_for(), slots.lead()
            wake.clear()
            # epoll sleeps whole milliseconds, rounded up: wake `lead` early (FINE_WAIT, and
            # time to ready the slot's runs) and sleep the rest precisely.
            handle = loop.call_at(loop.time() + delay - lead, wake.set)
            await wake.wait()
            handle.cancel()
            rest = slots.sleep_for()
            if 0 < rest <= lead:
                # The loop is ours until the slot: its runs are made ready meanwhile, so
                # at the due time only their spawns are left.
                host.clock.sleep_until(self.fire_due(ahead=True))
                self.runs.spawn()

    def fire_due(self, ahead: bool = False) -> float:
        """Request the runs of the slots that are due. With `ahead`, of the next slot
        instead, before it is due: they are readied and left to the caller's spawn() at
        the instant returned (monotonic). As many as are ready by then; a burst's rest
        goes the usual way."""
        now = self.slots.now()
        # From the same reading of the clocks, so the horizon is the slot's instant exactly.
        slot = self.slots.next_slot(now) if ahead else None
        wait = max(0.0, slot[0]) if slot else 0.0
        ready_by = now["mono"] + wait
        host = self.host

        def fire() -> None:
            for due in self.slots.due(host.jobs, now, wait, ready_by if ahead else 0.0):
                if host.state.is_paused(due.job):
                    host.jobs[due.job].missed_while_paused += 1
                    host.notifier.missed(due.job, "paused", due.due_wall)
                    continue
                host.submit(
                    StartRequest(
                        due.job,
                        "schedule",
                        due_mono=due.due_mono,
                        due_wall=due.due_wall,
                        wave=due.wave,
                    )
                )

        if ahead:
            self.runs.prepare_ahead(fire)
        else:
            self.runs.start_batch(fire)  # now, not a loop turn later: these runs are due
        return ready_by
