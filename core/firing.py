"""The scheduling loop: sleep until the nearest slot or until something (run-now, pause,
a finished run, a file) wakes it, then request the runs of the slots that are due. No
tick. Slots say when (core/slots.py); Runs do the rest (core/runs.py)."""

from __future__ import annotations

import asyncio

from watchkeeper.core.host import Host
from watchkeeper.core.runs import Runs
from watchkeeper.core.runtime import StartRequest
from watchkeeper.core.slots import Head, Now, Slots
from watchkeeper.core.turn_end import TurnEnd


class Firing:
    def __init__(self, host: Host, slots: Slots, runs: Runs) -> None:
        self.host = host
        self.slots = slots
        self.runs = runs
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop's next look at the slots: a timer, or a callback soon once woken.
        self._next: asyncio.Handle | None = None
        self._woken = False
        self._lead = 0.0  # how early the timer wakes the loop for the next slot
        self._served: asyncio.Future[None] | None = None
        self._turn_end: TurnEnd | None = None

    def wake(self) -> None:
        """Look at the slots now rather than at the timer: what is due has changed."""
        if self._next is None or self._woken:
            return
        assert self._loop is not None
        self._next.cancel()
        self._next = self._loop.call_soon(self._turn)
        self._woken = True

    def behind(self) -> bool:
        """Slots are due that the loop has not fired yet."""
        return not self.host.stopping and self.slots.sleep_for() <= 0

    async def serve(self) -> None:
        """Fire due slots until the keeper stops. The loop's timer calls back into the
        firing rather than waking a task that awaits an Event: one loop turn a wake, not
        two (the Event's waiter, then the task's step), and every slot has a wake."""
        self._loop = asyncio.get_running_loop()
        self._served = self._loop.create_future()
        self._turn_end = TurnEnd.of(self._loop)
        self._look()
        try:
            await self._served
        finally:
            if self._next is not None:
                self._next.cancel()
                self._next = None

    def _turn(self) -> None:
        self._next, self._woken = None, False
        assert self._served is not None and self._turn_end is not None
        turn_end = self._turn_end
        turn_end.hold()  # the log's and history's lines of these runs go out as it ends
        try:
            slots = self.slots
            now = slots.now()
            slot = slots.next_slot(now)
            if slot is not None and 0 < slot[0] <= self._lead:
                # The loop is ours until the slot: its runs are made ready meanwhile, so
                # at the due time only their spawns are left.
                self.host.clock.sleep_until(self.fire_due(True, now, slot))
                self.runs.spawn()
                self._look()  # from a new look at the clocks: time went by
            else:
                self._look(now, slot)
        except Exception as error:  # serve() raises it, as it would have raised it itself
            if not self._served.done():
                self._served.set_exception(error)
        finally:
            turn_end.release()

    def _look(self, now: Now | None = None, slot: Head | None = None) -> None:
        """Fire what is due, then set the timer for the next slot. `now` and `slot`: the
        clocks and the head the caller has just read (Slots.now(), Slots.next_slot())."""
        assert self._loop is not None and self._served is not None
        if self.host.stopping:
            if not self._served.done():
                self._served.set_result(None)
            return
        slots, loop = self.slots, self._loop
        if now is None:
            now = slots.now()
            slot = slots.next_slot(now)
        if slot is not None and slot[0] <= 0:  # else nothing is due: no batch to make
            self.fire_due(False, now)
            slot = slots.next_slot()
        delay, self._lead = slots.timing(slot)
        # epoll sleeps whole milliseconds, rounded up: wake `lead` early (FINE_WAIT, and
        # time to ready the slot's runs) and sleep the rest precisely.
        self._next = loop.call_at(loop.time() + delay - self._lead, self._turn)

    def fire_due(self, ahead: bool, now: Now, slot: Head | None = None) -> float:
        """Request the runs of the slots due at `now` (Slots.now()). With `ahead`, of the
        next slot instead (`slot`, read at `now`), before it is due: they are readied and
        left to the caller's spawn() at the instant returned (monotonic). As many as are
        ready by then; a burst's rest goes the usual way."""
        wait = max(0.0, slot[0]) if slot else 0.0
        ready_by = now["mono"] + wait
        host, runs = self.host, self.runs

        def fire() -> None:
            for due in self.slots.due(host.jobs, now, wait, ready_by if ahead else 0.0):
                if host.state.is_paused(due.job):
                    host.jobs[due.job].missed_while_paused += 1
                    host.notifier.missed(due.job, "paused", due.due_wall)
                    continue
                runs.request(
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
