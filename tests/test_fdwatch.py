"""FdWatch: many descriptors behind one loop reader, level-triggered like the loop's own."""

from __future__ import annotations

import asyncio
import os

from watchkeeper.core.fdwatch import FdWatch


async def test_callbacks_run_while_readable_and_stop_once_removed() -> None:
    loop = asyncio.get_running_loop()
    watch = FdWatch.of(loop)
    assert FdWatch.of(loop) is watch  # one a loop
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    heard: list[bytes] = []
    two = asyncio.Event()

    def readable() -> None:
        heard.append(os.read(read_end, 1))  # one byte a call: the rest keeps it readable
        if len(heard) == 2:
            watch.remove(read_end)
            two.set()

    watch.add(read_end, readable)
    os.write(write_end, b"abc")
    await asyncio.wait_for(two.wait(), 10)
    for _ in range(5):
        await asyncio.sleep(0)  # loop turns with "c" still in the pipe
    assert heard == [b"a", b"b"]
    os.close(read_end)
    os.close(write_end)


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    watch = FdWatch.of(loop)
    pipes = [os.pipe() for _ in range(2)]
    done = asyncio.Event()

    def failing() -> None:
        watch.remove(pipes[0][0])
        raise RuntimeError("boom")

    def working() -> None:
        watch.remove(pipes[1][0])
        done.set()

    watch.add(pipes[0][0], failing)
    watch.add(pipes[1][0], working)
    for _, write_end in pipes:
        os.write(write_end, b"x")
    await asyncio.wait_for(done.wait(), 10)
    assert [str(context["exception"]) for context in reported] == ["boom"]
    for pair in pipes:
        for fd in pair:
            os.close(fd)
