"""core/breaker.py, the circuit breaker of an http job, on a ManualClock: the transitions
closed → open → half-open → closed, and a failed probe opening it again."""

from __future__ import annotations

from datetime import UTC

from watchkeeper.core.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, Breakers
from watchkeeper.core.config_http import BreakerConfig
from watchkeeper.core.seams import ManualClock

CONFIG = BreakerConfig(failures=3, cooldown=60.0)


def breaker() -> tuple[Breaker, ManualClock]:
    clock = ManualClock(wall=1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    return Breaker(clock, UTC), clock


def test_opens_after_n_failures_in_a_row_only() -> None:
    subject, _ = breaker()
    assert subject.record(CONFIG, False) is None
    assert subject.record(CONFIG, False) is None
    assert subject.record(CONFIG, True) is None  # a success starts the count again
    assert subject.failures == 0
    assert subject.record(CONFIG, False) is None
    assert subject.record(CONFIG, False) is None
    assert subject.admit(CONFIG) is None
    assert subject.record(CONFIG, False) == OPEN
    assert subject.state == OPEN and subject.failures == 3


def test_open_skips_until_the_cooldown_then_lets_one_probe_through() -> None:
    subject, clock = breaker()
    for _ in range(3):
        subject.record(CONFIG, False)
    assert subject.admit(CONFIG) == "circuit open until 2023-11-14 22:14:20"
    view = subject.view()
    assert view == {"state": OPEN, "failures": 3, "open_until": "2023-11-14T22:14:20+00:00"}
    clock.advance(59.9)
    assert subject.admit(CONFIG) is not None
    clock.advance(0.1)
    assert subject.view()["state"] == HALF_OPEN  # the next run is the probe
    assert subject.admit(CONFIG) is None  # the probe
    assert subject.state == HALF_OPEN
    assert subject.admit(CONFIG) == "circuit half-open: a probe is in flight"
    assert subject.record(CONFIG, True) == CLOSED
    assert subject.admit(CONFIG) is None
    assert subject.view() == {"state": CLOSED, "failures": 0, "open_until": None}


def test_a_failed_probe_opens_it_again_for_a_whole_cooldown() -> None:
    subject, clock = breaker()
    for _ in range(3):
        subject.record(CONFIG, False)
    clock.advance(60)
    assert subject.admit(CONFIG) is None
    clock.advance(5)  # the probe took a while
    assert subject.record(CONFIG, False) == OPEN
    assert subject.admit(CONFIG) == "circuit open until 2023-11-14 22:15:25"
    clock.advance(59)
    assert subject.admit(CONFIG) is not None
    clock.advance(1)
    assert subject.admit(CONFIG) is None


def test_a_probe_that_proves_nothing_frees_its_place() -> None:
    subject, clock = breaker()
    for _ in range(3):
        subject.record(CONFIG, False)
    clock.advance(60)
    assert subject.admit(CONFIG) is None
    subject.release()  # cancelled before it could tell
    assert subject.admit(CONFIG) is None  # the next run probes
    # One that never reports at all holds the way for a cooldown, not for ever.
    assert subject.admit(CONFIG) is not None
    clock.advance(60)
    assert subject.admit(CONFIG) is None


def test_breakers_keep_state_per_job() -> None:
    clock = ManualClock()
    breakers = Breakers(clock, UTC)
    assert breakers.view("a") == {"state": CLOSED, "failures": 0, "open_until": None}
    for _ in range(3):
        breakers.get("a").record(CONFIG, False)
    assert breakers.view("a")["state"] == OPEN
    assert breakers.view("b")["state"] == CLOSED


def test_metrics_has_a_breaker_open_gauge_per_guarded_job_only() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from watchkeeper.core.metrics import Metrics
    from watchkeeper.core.slices import text_of

    jobs = [
        {"name": "api", "breaker": {"state": "open", "failures": 3, "open_until": "x"}},
        {"name": "probe", "breaker": {"state": "half-open", "failures": 3, "open_until": None}},
        {"name": "fine", "breaker": {"state": "closed", "failures": 0, "open_until": None}},
        {"name": "plain"},
    ]
    text = text_of(Metrics().lines({"jobs": jobs, "quota": []}, []))
    [family] = [f for f in text_string_to_metric_families(text) if f.name.endswith("breaker_open")]
    assert family.type == "gauge"
    assert {s.labels["job_name"]: s.value for s in family.samples} == {
        "api": 1,
        "probe": 1,
        "fine": 0,
    }
    assert "breaker_open" not in text_of(Metrics().lines({"jobs": jobs[3:], "quota": []}, []))
