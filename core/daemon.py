"""`--daemon`: a keeper serving its control socket until SIGINT/SIGTERM, then draining.

Here, not in the keeper, the two are put together: the keeper schedules and knows nothing
of sockets; the control server knows the keeper only by the calls it makes. And here are
the settings that hold for the whole process a keeper serves in, which a constructor
must not change behind its caller's back: every entry point that serves a keeper for
long (the daemon, the console's owner mode, the benchmarks) calls tune_process() before
and freeze_startup() after its start().
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import resource
import signal
import sys

from watchkeeper.core import tuning
from watchkeeper.core.control_server import start_control
from watchkeeper.core.keeper import Keeper


def tune_process() -> None:
    """A GIL hand-off within tuning.SWITCH_INTERVAL, and as many open files as the
    hard limit allows: each run holds a pipe and a pidfd, hundreds in flight need more
    than the usual 1024."""
    sys.setswitchinterval(min(sys.getswitchinterval(), tuning.SWITCH_INTERVAL))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def freeze_startup() -> None:
    """What exists once a keeper has started (config, jobs, schedules) lives as long as
    it does: frozen, a full garbage collection need not walk it (with 1,000 jobs it held
    the loop 18 ms). What starting freed (the config's text, the parser's leftovers)
    goes back to the system where the C library lets it: 1.6 MB of 10,000 jobs' 40 MB,
    in half a millisecond."""
    gc.collect()
    gc.freeze()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; not in every libc
    if trim is not None:
        trim(0)


def install_signal_handlers(keeper: Keeper, stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM drain gracefully, a second one ends the runs at once; SIGHUP reloads."""
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        if stop.is_set():
            keeper.log.warning(f"{name} again: ending runs now")
            keeper.hurry()
            return
        keeper.log.info(f"{name}: draining")
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    loop.add_signal_handler(signal.SIGHUP, keeper.reload, "SIGHUP")


async def run_daemon(keeper: Keeper) -> None:
    """--daemon: serve until SIGINT/SIGTERM, then drain."""
    stop = asyncio.Event()
    install_signal_handlers(keeper, stop)
    tune_process()
    await keeper.start()
    freeze_startup()
    control = await start_control(keeper)
    serving = asyncio.create_task(keeper.serve())
    try:
        await stop.wait()
        await keeper.stop()
        await serving
    finally:
        # Last: during the drain the CLI can still ask what is left and `run --wait` hears
        # back. And whatever went wrong, no socket is left behind.
        if control is not None:
            await control.close()
