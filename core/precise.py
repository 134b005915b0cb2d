"""A sleep that ends on time, for the last stretch before a slot.

Linux lets a sleeping thread wake up to its timer slack late (50 µs by default, more where
a service manager raises it) so that wakeups can be batched. Just before a slot, that
slack is lateness every run of the slot pays. It is lowered for that one sleep only: a
child inherits its parent thread's slack, and jobs should get the system's, not ours.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30
FINE_SLACK_NS = 1


@functools.cache
def _prctl() -> Callable[[int, int], int] | None:
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    call.restype = ctypes.c_int
    return lambda option, value: call(option, value, 0, 0, 0)


@functools.cache
def _thread_slack(thread: int) -> int:
    """The thread's own slack, read once: only sleep_until changes it, and puts it back."""
    prctl = _prctl()
    return prctl(PR_GET_TIMERSLACK, 0) if prctl else -1


def sleep_until(deadline: float) -> None:
    """Block the calling thread until time.monotonic() >= deadline."""
    seconds = deadline - time.monotonic()
    if seconds <= 0:
        return
    prctl = _prctl()
    slack = _thread_slack(threading.get_ident())
    if prctl is None or slack <= FINE_SLACK_NS:  # nothing to gain, or no way to
        time.sleep(seconds)
        return
    prctl(PR_SET_TIMERSLACK, FINE_SLACK_NS)
    try:
        time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        prctl(PR_SET_TIMERSLACK, slack)
