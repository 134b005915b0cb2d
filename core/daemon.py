"""`--daemon`: a keeper serving its control socket until SIGINT/SIGTERM, then draining.

Here, not in the keeper, the two are put together: the keeper schedules and knows nothing
of sockets; the control server knows the keeper only by the calls it makes.
"""

from __future__ import annotations

import asyncio
import signal

from core.control_server import start_control
from core.keeper import Keeper


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
    await keeper.start()
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
