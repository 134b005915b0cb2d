"""The circuit breaker of an http job, as a pure state machine over a Clock:

    closed ──N failures in a row──► open ──cooldown passed, next run──► half-open
      ▲                              ▲                                   (one probe)
      └──────── probe succeeds ──────┼────────── probe fails ────────────────┘

While open, runs are skipped ("circuit open until …"); once the cooldown has passed the
next run is the probe, and any other run while it is in flight is skipped too. A probe
that never reports (ended before its request went out) frees the way for another after
a cooldown, so a lost probe cannot hold the breaker half-open for ever. The keeper asks
`admit` before a run starts (core/runs.py) and the executor reports each end
(core/http_job.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from watchkeeper.core.control_protocol import BreakerView
from watchkeeper.core.seams import Clock

if TYPE_CHECKING:
    from watchkeeper.core.config_http import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Breaker:
    def __init__(self, clock: Clock, tz: tzinfo | None = None) -> None:
        self.clock, self.tz = clock, tz
        self.state = CLOSED
        self.failures = 0
        self._until_mono = 0.0
        self._until_wall = 0.0
        self._probe_since: float | None = None

    def admit(self, config: BreakerConfig) -> str | None:
        """None: the run may go (a probe, when half-open); else why it is skipped."""
        now = self.clock.monotonic()
        if self.state == OPEN:
            if now < self._until_mono:
                moment = datetime.fromtimestamp(self._until_wall, self.tz or UTC)
                return f"circuit open until {moment:%Y-%m-%d %H:%M:%S}"
            self.state = HALF_OPEN
        if self.state == HALF_OPEN:
            if self._probe_since is not None and now < self._probe_since + config.cooldown:
                return "circuit half-open: a probe is in flight"
            self._probe_since = now
        return None

    def record(self, config: BreakerConfig, ok: bool) -> str | None:
        """A run's end; the new state when it changed."""
        before = self.state
        self._probe_since = None
        if ok:
            self.state, self.failures = CLOSED, 0
        else:
            self.failures += 1
            if self.state == HALF_OPEN or self.failures >= config.failures:
                self.state = OPEN
                self._until_mono = self.clock.monotonic() + config.cooldown
                self._until_wall = self.clock.time() + config.cooldown
        return self.state if self.state != before else None

    def release(self) -> None:
        """A run that proves nothing (cancelled) ended: a probe's place is free again."""
        self._probe_since = None

    def view(self) -> BreakerView:
        """Open with its cooldown over shows as half-open: the next run is the probe."""
        if self.state == OPEN and self.clock.monotonic() >= self._until_mono:
            return {"state": HALF_OPEN, "failures": self.failures, "open_until": None}
        until = None
        if self.state == OPEN:
            moment = datetime.fromtimestamp(self._until_wall, self.tz or UTC)
            until = moment.isoformat(timespec="seconds")
        return {"state": self.state, "failures": self.failures, "open_until": until}


class Breakers:
    """Every http job's breaker, by job name: kept across reloads."""

    def __init__(self, clock: Clock, tz: tzinfo | None = None) -> None:
        self.clock, self.tz = clock, tz
        self._by_job: dict[str, Breaker] = {}

    def get(self, job: str) -> Breaker:
        found = self._by_job.get(job)
        if found is None:
            found = self._by_job[job] = Breaker(self.clock, self.tz)
        return found

    def view(self, job: str) -> BreakerView:
        found = self._by_job.get(job)
        if found is None:
            return {"state": CLOSED, "failures": 0, "open_until": None}
        return found.view()
