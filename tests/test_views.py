"""The keeper's views (jobs, status, Dashboard.md, metrics) hold up at the far ends of
what a config may say, and a reload that goes past them keeps the running config."""

from __future__ import annotations

from datetime import datetime, timedelta

from conftest import finish, keeper_log, started_keeper

from watchkeeper.core.config import load_config
from watchkeeper.core.status import vault_status

EXTREMES = """
[keeper]
max_runs_per_hour = 1000000
[jobs.yearly]
command = ["true"]
every = "366d"
timeout = "366d"
retries = 100
retry_delay = "366d"
max_retry_delay = "366d"
max_per_hour = 1000000
[jobs.leap]
command = ["true"]
cron = "0 0 29 2 *"
[jobs.quick]
command = ["true"]
every = "50ms"
"""


async def test_views_at_the_far_ends_of_the_config(make_vault) -> None:
    vault = make_vault(EXTREMES)
    keeper = await started_keeper(vault)
    views = {view["name"]: view for view in keeper.snapshot()["jobs"]}
    now = datetime.now().astimezone()
    yearly_at, leap_at = views["yearly"]["next_run"], views["leap"]["next_run"]
    assert yearly_at is not None and leap_at is not None
    yearly = datetime.fromisoformat(yearly_at)
    assert timedelta(days=365) < yearly - now <= timedelta(days=366, seconds=1)
    leap = datetime.fromisoformat(leap_at)
    assert (leap.month, leap.day) == (2, 29) and leap - now < timedelta(days=8 * 366)
    keeper.outputs.write_now()
    dashboard = (vault / "Dashboard.md").read_text()
    assert "| yearly |" in dashboard and "| leap |" in dashboard
    status = vault_status(load_config(vault / "watchkeeper.toml"))
    offline = {view["name"]: view for view in status["jobs"]}
    assert offline["leap"]["next_run"] == views["leap"]["next_run"]

    # A value past the bounds is refused on reload; the running config stays in charge.
    (vault / "watchkeeper.toml").write_text(EXTREMES.replace('every = "366d"', "every = inf"))
    assert not keeper.reload("test")
    keeper.log.flush()
    assert "config reload (test) refused, keeping the running config:" in keeper_log(vault)
    assert keeper.jobs["yearly"].config.every == 366 * 86400
    assert keeper.snapshot()["jobs"][0]["next_run"] == views["yearly"]["next_run"]
    await finish(keeper)
