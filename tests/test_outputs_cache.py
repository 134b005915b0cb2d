"""Dashboard.md and metrics.prom as a long-running keeper writes them, reusing what it
rendered before (escaped cells, each job's duration summary, its trigger and last run
as viewed), are byte for byte what a keeper rendering everything afresh writes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from conftest import finish, until

from watchkeeper.core.config import load_config
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire
from watchkeeper.core.metrics import Metrics
from watchkeeper.core.outputs import Outputs
from watchkeeper.core.seams import SystemClock
from watchkeeper.core.slices import text_of
from watchkeeper.core.vault import summarize_all
from watchkeeper.core.views import Views

# Cron triggers: their next run is a wall time, the same in both renders.
CONFIG = """
[jobs.ok]
command = ["true"]
cron = "0 3 * * *"
[jobs.bad]
command = ["sh", "-c", "echo 'boom | [[x]]' >&2; exit 3"]
cron = "30 4 * * 1"
[jobs.late]
command = ["true"]
cron = "15 * * * *"
[jobs.held]
command = ["true"]
[jobs.slow]
command = ["sleep", "30"]
[jobs.flip]
command = ["sh", "-c", "[ -e FLAG ] && exit 4; touch FLAG"]
"""


class HeldClock(SystemClock):
    """The system clock, held at one moment while the two renders are made."""

    def __init__(self) -> None:
        self.held: tuple[float, float] | None = None

    def time(self) -> float:
        return self.held[0] if self.held else time.time()

    def monotonic(self) -> float:
        return self.held[1] if self.held else time.monotonic()


async def run_all(keeper: Keeper, jobs: list[str]) -> None:
    for job in jobs:
        _, finished = keeper.run_and_watch(job)
        await finished


def fresh_render(keeper: Keeper, observed: list[tuple]) -> tuple[str, str]:
    """What a keeper holding nothing from earlier writes renders for the same state."""
    fresh = Outputs(keeper)
    fresh.metrics = Metrics()
    fresh.metrics.created_at = keeper.outputs.metrics.created_at
    for args in observed:
        fresh.metrics.observe_run(*args)
    fresh.recent.extend(keeper.outputs.recent)
    fresh.failures.extend(keeper.outputs.failures)
    dashboard, metrics = fresh.lines(Views(keeper).snapshot(), summarize_all(keeper.vault))
    return text_of(dashboard), text_of(metrics)


async def test_a_write_after_some_jobs_changed_is_what_a_fresh_render_makes(
    make_vault, tmp_path: Path
) -> None:
    vault: Path = make_vault(CONFIG.replace("FLAG", str(tmp_path / "flag")))
    clock = HeldClock()
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault), clock=clock)
    await keeper.start()
    serving = asyncio.create_task(keeper.serve())
    observed: list[tuple] = []
    observe = keeper.outputs.metrics.observe_run

    def recording(*args: object) -> None:
        observed.append(args)
        observe(*args)  # type: ignore[arg-type]

    keeper.outputs.metrics.observe_run = recording  # type: ignore[method-assign]
    await run_all(keeper, ["ok", "bad", "held", "flip"])
    await keeper.outputs.refresh()  # what the next write may reuse
    first = (vault / "Dashboard.md").read_text()

    # Some jobs change: one runs again, one fails again, one fails after a success, one
    # runs for the first time (new series), one is paused, one is running as the write is
    # made, and a reload gives every job a new config.
    await run_all(keeper, ["ok", "bad", "late", "ok", "flip"])
    keeper.pause("held")
    config = (vault / "watchkeeper.toml").read_text()
    (vault / "watchkeeper.toml").write_text(config.replace("0 3 * * *", "0 5 * * *"))
    assert keeper.reload("test")  # a new config for every job
    slow = keeper.run_now("slow")
    await until(lambda: bool(keeper.jobs["slow"].active))
    assert await keeper.wait_idle(0) is False
    clock.held = (time.time(), time.monotonic())
    await keeper.outputs.refresh()
    written = (vault / "Dashboard.md").read_text(), (vault / "Logs" / "metrics.prom").read_text()
    assert written == fresh_render(keeper, observed)
    assert written[0] != first
    assert "| late | cron 15 \\* \\* \\* \\* |" in written[0]
    assert "| ok | cron 0 5 \\* \\* \\* |" in written[0]
    assert "| flip | manual | — | ✘ failure " in written[0]
    assert 'watchkeeper_run_duration_seconds_count{job_name="ok"} 3\n' in written[1]
    assert 'watchkeeper_runs_total{job_name="late",status="success"} 1\n' in written[1]

    clock.held = None
    keeper.cancel(slow)
    await finish(keeper, serving)


async def test_a_job_view_reused_from_an_earlier_one_is_its_own_copy(make_vault) -> None:
    vault: Path = make_vault('[jobs.ok]\ncommand = ["true"]\n')
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    serving = asyncio.create_task(keeper.serve())
    await run_all(keeper, ["ok"])
    runtime = keeper.jobs["ok"]
    given = keeper.job_view(runtime)["last"]
    assert given is not None and given["status"] == "success"
    given["status"] = "changed by a subscriber"
    assert keeper.job_view(runtime)["last"] == runtime.last.to_json()  # type: ignore[union-attr]
    await finish(keeper, serving)
