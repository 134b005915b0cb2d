"""Whether a requested run starts now: overlap, max_parallel, a stopping keeper. Pure:
it looks at what is in flight and queued, and says what to do; core/runs.py does it.
The quota is asked separately (core/quota.py), when the run is about to start: a run
that waited in a queue is counted when it starts, not when it was asked for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["start", "queue", "wait", "skip", "absorbed"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""


START = Verdict("start")
QUEUE = Verdict("queue")  # behind the job's run in flight (overlap = queue)
WAIT = Verdict("wait")  # for a free place under max_parallel
ABSORBED = Verdict("absorbed")  # a file run: the run in flight takes the files on


def decide(
    trigger: str,
    overlap: str,
    in_flight: Iterable[str],
    queued: Sequence[str],
    running_total: int,
    max_parallel: int,
    stopping: bool,
) -> Verdict:
    """`in_flight`: the job's runs in flight; `queued`: the ids queued behind them;
    `running_total`: runs in flight of every job."""
    if stopping:
        return Verdict("skip", "keeper is stopping")
    running = next(iter(in_flight), None)
    if running is not None and overlap != "allow":
        if trigger == "file":
            return ABSORBED
        if overlap == "skip":
            return Verdict("skip", f"run {running} still running (overlap = skip)")
        if queued:
            return Verdict("skip", f"run {queued[0]} already queued (overlap = queue)")
        return QUEUE
    if running_total >= max_parallel:
        return WAIT
    return START
