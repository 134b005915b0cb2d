"""The in-process client: the keeper on its own thread, driven from another."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import wait_for

from watchkeeper.core.client import InProcessClient
from watchkeeper.core.config import load_config
from watchkeeper.core.events import Event
from watchkeeper.core.history import Query
from watchkeeper.core.lock import acquire, holder


def test_owner_client_runs_pauses_cancels_and_reports(make_vault) -> None:
    vault: Path = make_vault(
        """
        [jobs.quick]
        command = ["sh", "-c", "echo hi"]
        [jobs.slow]
        command = ["sleep", "30"]
        """
    )
    client = InProcessClient(load_config(vault / "watchkeeper.toml"), acquire(vault))
    events: list[Event] = []
    lock = threading.Lock()

    def on_event(event: Event) -> None:
        with lock:
            events.append(event)

    def kinds() -> list[str]:
        with lock:
            return [event.kind for event in events]

    client.start(on_event)
    assert (holder(vault) or {}).get("pid", 0) > 0
    run_id = client.run_now("quick")
    wait_for(lambda: any(e.kind == "run_finished" and e.data["id"] == run_id for e in list(events)))
    assert client.history(Query(limit=5)).records[0].id == run_id
    client.pause("quick")
    assert client.snapshot()["jobs"][0]["paused"] is True
    assert "job_state" in kinds()
    slow = client.run_now("slow")
    wait_for(lambda: client.snapshot()["running"] == 1)
    assert client.cancel(slow) is True
    wait_for(lambda: client.snapshot()["running"] == 0)
    client.close()
    assert holder(vault) is None
    assert kinds()[-1] == "keeper_state"
    assert client.history(Query(job="slow", limit=1)).records[0].status == "cancelled"
