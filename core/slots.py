"""When the next runs are due: every job's coming slots in two heaps, one per clock (cron
on the wall clock, intervals on the monotonic one). Pure given a Clock: no loop, no
processes, so DST, clock steps and catch-up are tested with a ManualClock in microseconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from watchkeeper.core import tuning
from watchkeeper.core.seams import Clock
from watchkeeper.core.triggers import Schedule

# (due, push order, job, index of the job's schedule)
Entry = tuple[float, int, str, int]
Now = dict[str, float]
# Seconds until the soonest slot (negative if overdue), and the heap it heads.
Head = tuple[float, list[Entry]]


class Scheduled(Protocol):
    """What a job holds of its slots: its schedules and each one's next due time."""

    @property
    def schedules(self) -> Sequence[Schedule]: ...

    @property
    def next_due(self) -> list[float]: ...


@dataclass(frozen=True)
class Slot:
    job: str
    clock: str  # "wall" or "mono"
    due: float  # on its own clock
    due_mono: float
    due_wall: float

    @property
    def wave(self) -> str:
        """Runs of one slot satisfy `after` lists together."""
        return f"{self.clock}:{self.due:.0f}"


class Slots:
    def __init__(self, clock: Clock, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.heaps: dict[str, list[Entry]] = {"wall": [], "mono": []}
        self._seq = 0
        # A jittered entry waits in its heap at its delayed start; its slot is kept here,
        # by push order, for the slot's identity and the series' next slot.
        self.slot_of: dict[int, float] = {}
        self.rng = rng or random.Random()

    def now(self) -> Now:
        return {"wall": self.clock.time(), "mono": self.clock.monotonic()}

    def push(self, clock: str, due: float, job: str, index: int, jitter: float = 0.0) -> None:
        """A slot into its heap; with `jitter`, to start a random delay up to that after it
        (never before it)."""
        self._seq += 1
        start = due
        if jitter > 0:
            start = due + self.rng.uniform(0.0, jitter)
            self.slot_of[self._seq] = due
        heapq.heappush(self.heaps[clock], (start, self._seq, job, index))

    def first_dues(self, job: Scheduled) -> None:
        now = self.now()
        job.next_due[:] = [schedule.first(now[schedule.clock]) for schedule in job.schedules]

    def lay_out(self, name: str, job: Scheduled) -> None:
        for index, schedule in enumerate(job.schedules):
            self.push(schedule.clock, job.next_due[index], name, index, schedule.jitter)

    def next_slot(self, now: Now | None = None) -> Head | None:
        """Seconds from `now` until the soonest slot on either clock (negative if
        overdue), and the heap it heads."""
        now = now or self.now()
        soonest: Head | None = None
        for clock, heap in self.heaps.items():
            if heap:
                gap = heap[0][0] - now[clock]
                if soonest is None or gap < soonest[0]:
                    soonest = (gap, heap)
        return soonest

    def sleep_for(self) -> float:
        return _sleep(self.next_slot())

    def lead(self) -> float:
        """How long before the next slot the loop wakes to ready its runs."""
        return _lead(self.next_slot())

    @staticmethod
    def timing(slot: Head | None) -> tuple[float, float]:
        """sleep_for() and lead() from a look at the heaps the caller has just taken
        (next_slot())."""
        return _sleep(slot), _lead(slot)

    def due(
        self, jobs: Mapping[str, Scheduled], now: Now, wait: float = 0.0, ready_by: float = 0.0
    ) -> Iterator[Slot]:
        """Pop the slots due by `now` + `wait`, each job's next one pushed in its place.
        With `ready_by` (monotonic), stop popping once the clock reaches it: the caller
        readies runs ahead of their slot and must be done by then."""
        for clock, heap in self.heaps.items():
            while heap and heap[0][0] <= now[clock] + wait:
                if ready_by and self.clock.monotonic() >= ready_by:
                    return
                start, seq, name, index = heapq.heappop(heap)
                due = self.slot_of.pop(seq, start)
                job = jobs.get(name)
                if job is None or index >= len(job.next_due):
                    continue
                if job.next_due[index] != due:
                    continue  # superseded by a reload
                schedule = job.schedules[index]
                following = schedule.following(due, now[clock])
                job.next_due[index] = following
                self.push(clock, following, name, index, schedule.jitter)
                # The run is due at its start: the slot put off by its jitter.
                yield Slot(
                    name,
                    clock,
                    due,
                    due_mono=start if clock == "mono" else now["mono"] - (now["wall"] - start),
                    due_wall=start if clock == "wall" else now["wall"] - (now["mono"] - start),
                )

    def next_wall(self, job: Scheduled) -> float | None:
        """The job's next slot as wall-clock seconds; None without one."""
        if not job.next_due:
            return None
        wall, mono = self.clock.time(), self.clock.monotonic()
        return min(
            due if schedule.clock == "wall" else wall + (due - mono)
            for schedule, due in zip(job.schedules, job.next_due, strict=False)
        )

    def missed(self, job: Scheduled, last_start: float) -> bool:
        """Whether a slot of the job passed since `last_start` (catch-up after downtime)."""
        now = self.clock.time()
        return any(schedule.missed_since(last_start, now) for schedule in job.schedules)


def _sleep(slot: Head | None) -> float:
    if slot is None:
        return tuning.MAX_WALL_SLEEP
    return max(0.0, min(tuning.MAX_WALL_SLEEP, slot[0]))


def _lead(slot: Head | None) -> float:
    if slot is None:
        return tuning.FINE_WAIT
    heap = slot[1]
    each, most = tuning.READY_EACH, tuning.READY_MAX
    # Every ancestor of an entry equal to a heap's least is equal to it too: a walk down
    # from the root through equal entries finds them all, and only them.
    due, count, todo = heap[0][0], 0, [0]
    while todo and count * each < most:
        index = todo.pop()
        if index < len(heap) and heap[index][0] == due:
            count += 1
            todo += (2 * index + 1, 2 * index + 2)
    return tuning.FINE_WAIT + min(most, count * each)
