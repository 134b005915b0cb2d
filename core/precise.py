"""Waking on time for a slot: an alarm for the event loop, and a sleep for the last stretch.

Linux lets a sleeping thread wake up to its timer slack late (50 µs by default, more where
a service manager raises it) so that wakeups can be batched. Just before a slot, that
slack is lateness every run of the slot pays. It is lowered for that one sleep only: a
child inherits its parent thread's slack, and jobs should get the system's, not ours.

The event loop's own timers wake up to a whole millisecond late (epoll's timeout is in
milliseconds, rounded up), so without an Alarm the loop wakes early and sleeps the rest:
two wakes a slot where one will do. On this kind of machine a thread's wake costs it
30-75 µs of CPU (bench: a sleep-and-wake loop), more than the Python that follows.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from watchkeeper.core import tuning

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30
FINE_SLACK_NS = 1
CLOCK_MONOTONIC = 1  # time.monotonic()'s clock
TFD_TIMER_ABSTIME = 1


@functools.cache
def _libc() -> Any:
    """The C library through ctypes (imported only once a keeper sleeps for a slot)."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@functools.cache
def _prctl() -> Callable[[int, int], int] | None:
    import ctypes

    call = getattr(_libc(), "prctl", None)
    if call is None:
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    call.restype = ctypes.c_int
    return lambda option, value: call(option, value, 0, 0, 0)


def sleep_until(deadline: float) -> None:
    """Block the calling thread until time.monotonic() >= deadline."""
    seconds = deadline - time.monotonic()
    if seconds <= 0:
        return
    if seconds <= tuning.SPIN_MAX:
        # Going to sleep and waking would cost the thread more CPU than so short a wait.
        while time.monotonic() < deadline:
            pass
        return
    prctl = _prctl()
    slack = prctl(PR_GET_TIMERSLACK, 0) if prctl else -1
    if prctl is None or slack <= FINE_SLACK_NS:  # nothing to gain, or no way to
        time.sleep(seconds)
        return
    prctl(PR_SET_TIMERSLACK, FINE_SLACK_NS)
    try:
        time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        prctl(PR_SET_TIMERSLACK, slack)


@functools.cache
def _timerfd() -> tuple[Callable[[int, int], int], Callable[[int, float], None]] | None:
    """timerfd_create(clock, flags) and set(fd, monotonic): arm it to ring once then."""
    import ctypes

    libc = _libc()
    create = getattr(libc, "timerfd_create", None)
    settime = getattr(libc, "timerfd_settime", None)
    if create is None or settime is None:
        return None

    class Timespec(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

    class Itimerspec(ctypes.Structure):
        _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

    create.argtypes = [ctypes.c_int, ctypes.c_int]
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def arm(fd: int, monotonic: float) -> None:
        # All zeros would disarm it; an instant already past rings at once.
        seconds = max(monotonic, 1e-9)
        when = Itimerspec(Timespec(0, 0), Timespec(int(seconds), int(seconds % 1 * 1e9)))
        if settime(fd, TFD_TIMER_ABSTIME, ctypes.byref(when), None) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"timerfd_settime: {os.strerror(number)}")

    return create, arm


class Alarm:
    """Calls `ring` on the loop at a monotonic instant, to the microsecond: a timerfd in
    the loop's epoll set."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        arm: Callable[[int, float], None],
        ring: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._arm = arm
        self._ring = ring
        loop.add_reader(fd, self._rang)

    def set(self, monotonic: float) -> None:
        """Ring once at `monotonic` (at once if that is past), instead of any earlier time."""
        assert self._fd is not None
        self._arm(self._fd, monotonic)

    def _rang(self) -> None:
        assert self._fd is not None
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # set again after it rang: the new time is still to come
            return
        self._ring()

    def close(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def alarm(loop: asyncio.AbstractEventLoop, ring: Callable[[], None]) -> Alarm | None:
    """An Alarm on the loop, or None where there is no timerfd: then the loop's own timer."""
    timerfd = _timerfd()
    if timerfd is None:
        return None
    create, arm = timerfd
    fd = create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    return Alarm(loop, fd, arm, ring)
