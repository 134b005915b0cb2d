"""TurnEnd: deferred writes made once a turn, or as a held batch ends."""

from __future__ import annotations

import asyncio
import threading

from watchkeeper.core.turn_end import TurnEnd


async def test_deferred_callbacks_run_together_a_turn_later() -> None:
    loop = asyncio.get_running_loop()
    turn_end = TurnEnd.of(loop)
    assert TurnEnd.of(loop) is turn_end
    calls: list[str] = []
    turn_end.defer(lambda: calls.append("history"))
    turn_end.defer(lambda: calls.append("log"))
    assert calls == []
    await asyncio.sleep(0)
    assert calls == ["history", "log"]


async def test_a_held_batch_makes_its_writes_as_it_ends_without_a_turn_of_their_own() -> None:
    loop = asyncio.get_running_loop()
    turn_end = TurnEnd.of(loop)
    calls: list[str] = []
    turn_end.hold()
    turn_end.hold()  # nested: the outer release ends the batch
    turn_end.defer(lambda: calls.append("history"))
    turn_end.release()
    assert calls == []
    turn_end.release()
    assert calls == ["history"]
    # Nothing was left for a later turn: the loop has no callback of ours to run.
    ready = len(loop._ready)  # type: ignore[attr-defined]
    assert ready == 0


async def test_a_failing_write_is_reported_and_the_others_still_happen() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    turn_end = TurnEnd.of(loop)
    calls: list[str] = []

    def failing() -> None:
        raise OSError("disk gone")

    turn_end.hold()
    turn_end.defer(failing)
    turn_end.defer(lambda: calls.append("log"))
    turn_end.release()
    assert calls == ["log"]
    assert [str(context["exception"]) for context in reported] == ["disk gone"]


async def test_a_defer_from_another_thread_runs_on_the_loop() -> None:
    loop = asyncio.get_running_loop()
    turn_end = TurnEnd.of(loop)
    ran_on: list[int] = []
    done = asyncio.Event()

    def write() -> None:
        ran_on.append(threading.get_ident())
        done.set()

    thread = threading.Thread(target=turn_end.defer, args=(write,))
    thread.start()
    thread.join()
    await asyncio.wait_for(done.wait(), 10)
    assert ran_on == [threading.get_ident()]
