"""An http job's breaker in the console's Jobs pane (the real app under Pilot, its own
keeper calling a real local server) and in `describe`'s rows."""

from __future__ import annotations

from conftest import pilot_until as until
from console_kit import cell, console

from watchkeeper.core.config import load_config
from watchkeeper.core.jobinfo import config_rows


async def test_the_jobs_pane_shows_an_open_breaker(make_vault, endpoint) -> None:
    endpoint.status = 500
    vault = make_vault(
        f"""
        [jobs.api]
        http = {{ url = "{endpoint.url}/" }}
        breaker = {{ failures = 1, cooldown = "1h" }}
        """
    )
    async with console(vault) as (app, pilot, client):
        assert cell(app, "api", "state") == ""
        client.run_now("api")
        await until(pilot, lambda: cell(app, "api", "state") == "⊘ open")
        assert cell(app, "api", "last").startswith("✘")


def test_describe_shows_the_call_without_secrets(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.api]
        http = { url = "https://bob:hunter2-pw@api.example/health", headers = { Authorization = "Bearer x" }, expect = [200, 204] }
        breaker = { failures = 3, cooldown = "2m" }
        """  # noqa: E501
    )
    job = load_config(vault / "watchkeeper.toml").jobs["api"]
    rows = dict(config_rows(job, "watchkeeper.toml"))
    assert rows["http"] == (
        "GET https://bob:***@api.example/health; expect 200, 204; headers Authorization"
    )
    assert rows["breaker"] == "opens after 3 failures, 2m00s"
    assert "command" not in rows
