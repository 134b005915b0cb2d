"""FdWatch: many descriptors behind one loop reader, level-triggered like the loop's own."""

from __future__ import annotations

import asyncio
import os
import time

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


async def test_add_after_watches_from_its_time_on_and_not_before() -> None:
    watch = FdWatch.of(asyncio.get_running_loop())
    read_end, write_end = os.pipe()
    os.write(write_end, b"x")  # readable from the start
    heard = asyncio.Event()

    def readable() -> None:
        watch.remove(read_end)
        heard.set()

    added = time.monotonic()
    watch.add_after(0.05, read_end, readable)
    assert watch.waiting(read_end)
    await asyncio.wait_for(heard.wait(), 10)
    assert time.monotonic() - added >= 0.05
    assert not watch.waiting(read_end)
    for fd in (read_end, write_end):
        os.close(fd)


async def test_one_removed_before_its_time_is_never_called() -> None:
    watch = FdWatch.of(asyncio.get_running_loop())
    early_read, early_write = os.pipe()
    late_read, late_write = os.pipe()
    for fd in (early_write, late_write):
        os.write(fd, b"x")
    heard: list[str] = []
    late_heard = asyncio.Event()

    def late() -> None:
        watch.remove(late_read)
        heard.append("late")
        late_heard.set()

    watch.add_after(0.02, early_read, lambda: heard.append("early"))
    watch.add_after(0.04, late_read, late)
    watch.remove(early_read)  # its run ended first: its pipe is closed, its number free
    assert not watch.waiting(early_read)
    await asyncio.wait_for(late_heard.wait(), 10)
    assert heard == ["late"]
    for fd in (early_read, early_write, late_read, late_write):
        os.close(fd)


async def test_a_shorter_delay_after_a_longer_one_waits_for_the_longers_time() -> None:
    # The queue stays in due order, so its head is always the next one due.
    watch = FdWatch.of(asyncio.get_running_loop())
    pipes = [os.pipe() for _ in range(2)]
    for _, write_end in pipes:
        os.write(write_end, b"x")
    heard: list[tuple[str, float]] = []
    both = asyncio.Event()

    def readable(name: str, fd: int) -> None:
        watch.remove(fd)
        heard.append((name, time.monotonic()))
        if len(heard) == 2:
            both.set()

    added = time.monotonic()
    watch.add_after(0.1, pipes[0][0], lambda: readable("long", pipes[0][0]))
    watch.add_after(0.001, pipes[1][0], lambda: readable("short", pipes[1][0]))
    await asyncio.wait_for(both.wait(), 10)
    assert [name for name, _ in heard] == ["long", "short"]
    assert all(moment - added >= 0.1 for _, moment in heard)
    for pair in pipes:
        for fd in pair:
            os.close(fd)
