"""The precise sleep before a slot: on time, and the thread's timer slack given back."""

from __future__ import annotations

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
