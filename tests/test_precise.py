"""The precise sleep before a slot: on time, and the thread's timer slack given back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from watchkeeper.core import precise
from watchkeeper.core.precise import PR_GET_TIMERSLACK, sleep_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="timer slack is Linux's")


def test_sleep_until_never_ends_early_and_children_get_the_usual_slack() -> None:
    prctl = precise._prctl()
    assert prctl is not None
    before = prctl(PR_GET_TIMERSLACK, 0)
    for _ in range(20):
        deadline = time.monotonic() + 0.002
        sleep_until(deadline)
        assert time.monotonic() >= deadline
    sleep_until(time.monotonic() - 1)  # a deadline already past returns at once
    assert prctl(PR_GET_TIMERSLACK, 0) == before
    # A child inherits the slack of the thread that starts it: a job must get ours as it
    # was, not the lowered one.
    child = subprocess.run(
        ["cat", "/proc/self/timerslack_ns"], capture_output=True, text=True, check=True
    )
    assert int(child.stdout) == before


async def test_an_alarm_rings_once_never_early_and_a_new_time_replaces_the_old() -> None:
    loop = asyncio.get_running_loop()
    rang: list[float] = []
    alarm = precise.alarm(loop, lambda: rang.append(time.monotonic()))
    assert alarm is not None  # Linux has timerfd
    try:
        superseded = time.monotonic() + 0.05
        alarm.set(superseded)
        due = time.monotonic() + 0.02
        alarm.set(due)  # sooner: the one above never rings
        deadline = time.monotonic() + 10
        while not rang:
            assert time.monotonic() < deadline, "the alarm never rang"
            await asyncio.sleep(0.005)
        assert rang[0] >= due
        await asyncio.sleep(max(0.0, superseded - time.monotonic()) + 0.05)
        assert len(rang) == 1
        alarm.set(time.monotonic() - 1)  # a time already past rings at once
        deadline = time.monotonic() + 10
        while len(rang) < 2:
            assert time.monotonic() < deadline, "a past time did not ring"
            await asyncio.sleep(0.001)
    finally:
        alarm.close()


def test_a_wait_shorter_than_spin_max_is_spun_and_ends_on_time() -> None:
    for _ in range(50):
        deadline = time.monotonic() + precise.tuning.SPIN_MAX / 2
        sleep_until(deadline)
        assert time.monotonic() >= deadline
