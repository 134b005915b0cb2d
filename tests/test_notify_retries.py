"""`failure` is a run that failed for good: attempts the keeper retries notify nothing;
the last one sends `failure` and `retries_exhausted`. A real keeper, a real local HTTP
server as the webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import finals, finish, keeper_log, started_keeper, until
from notify_kit import endpoint


async def _events_of(vault: Path, job: str, runs: int, hook) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    keeper = await started_keeper(vault)
    task = asyncio.create_task(keeper.serve())
    keeper.run_now(job)
    await until(lambda: len(finals(vault, job)) >= runs)
    await finish(keeper, task)  # sends what waits: every event is in by then
    return [
        (event["event"], event["attempt"]) for body in hook.bodies() for event in body["events"]
    ]


async def test_only_the_last_failed_attempt_is_notified(make_vault) -> None:
    with endpoint() as hook:
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "{hook.url()}"
            rate_window = "0s"
            [jobs.flaky]
            command = ["false"]
            retries = 2
            retry_delay = "0s"
            notify = ["hook"]
            """
        )
        events = await _events_of(vault, "flaky", 3, hook)
    assert sorted(events) == [("failure", 3), ("retries_exhausted", 3)]
    assert "retry 2 of 3" in keeper_log(vault)


async def test_a_failure_a_retry_mends_sends_nothing(make_vault) -> None:
    with endpoint() as hook:
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "{hook.url()}"
            rate_window = "0s"
            [jobs.mended]
            command = ["sh", "-c", "test -f tried || {{ touch tried; exit 1; }}"]
            retries = 1
            retry_delay = "0s"
            notify = ["hook"]
            """
        )
        events = await _events_of(vault, "mended", 2, hook)
    assert [record["status"] for record in finals(vault, "mended")] == ["failure", "success"]
    assert events == []  # no failure was told, so no `recovered` either
