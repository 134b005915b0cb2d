"""The console's `R` (DESIGN "Runs with parameters"): on a job, a form of its params,
prefilled with the defaults, enter runs and escape cancels; a job without params runs as
`r` runs it; on a failed run in History, R runs it again with that run's values in the
form. The real app under Pilot over a real keeper; the command writes its environment to
a file."""

from __future__ import annotations

from pathlib import Path

from conftest import final_records
from conftest import pilot_until as until
from console_kit import console, select_job
from textual.widgets import Input

from watchkeeper.core.history import Query
from watchkeeper.tui.screens.params import ParamsScreen

JOBS = """
[jobs.report]
command = ["sh", "-c", '''
echo $WATCHKEEPER_PARAM_DAY/$WATCHKEEPER_PARAM_API_KEY > env-$WATCHKEEPER_RUN_ID.txt
test $WATCHKEEPER_PARAM_DAY != bad''']
params = { day = "today", API_KEY = "k-default" }
[jobs.plain]
command = ["true"]
"""


def written(vault: Path, run_id: str) -> str:
    return (vault / f"env-{run_id}.txt").read_text().strip()


def fields(app) -> dict[str, str]:
    return {widget.id: widget.value for widget in app.screen.query(Input)}


async def test_capital_r_opens_the_form_prefilled_and_enter_runs_with_its_values(
    make_vault,
) -> None:
    vault = make_vault(JOBS)
    async with console(vault, size=(80, 24)) as (app, pilot, client):
        await select_job(pilot, app, "report")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ParamsScreen))
        assert fields(app) == {"param-day": "today", "param-API_KEY": "k-default"}
        assert app.screen.query_one("#param-API_KEY", Input).password  # a secret's field
        # Escape: nothing runs.
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ParamsScreen))
        await pilot.pause(0.3)
        assert client.history(Query(job="report")).records == []

        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ParamsScreen))
        await pilot.press("end", *["backspace"] * 5, *"2026-12-01", "enter")
        await until(pilot, lambda: len(client.history(Query(job="report")).records) == 1)
        run = client.history(Query(job="report")).records[0]
        await until(pilot, lambda: final_records(vault).get(run.id, {}).get("status") == "success")
        assert written(vault, run.id) == "2026-12-01/k-default"
        assert final_records(vault)[run.id]["params"] == {"day": "2026-12-01", "API_KEY": "***"}
        assert run.trigger == "manual"


async def test_capital_r_on_a_job_without_params_runs_it_as_r_does(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        await select_job(pilot, app, "plain")
        await pilot.press("R")
        await until(pilot, lambda: len(client.history(Query(job="plain")).records) == 1)
        assert not isinstance(app.screen, ParamsScreen)
        assert (
            "params" not in final_records(vault)[client.history(Query(job="plain")).records[0].id]
        )


async def test_capital_r_on_a_failed_run_in_history_offers_that_runs_values(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, pilot, client):
        failed = client.run_now("report", {"day": "bad", "API_KEY": "typed-secret"})
        history = app.main.history_pane
        await until(pilot, lambda: history.by_id.get(failed, {}).get("status") == "failure")
        await pilot.press("3")
        history.table.move_to_key(failed)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ParamsScreen))
        # The history masked the key, so its field starts from the default, not "***".
        assert fields(app) == {"param-day": "bad", "param-API_KEY": "k-default"}
        await pilot.press(*["backspace"] * 3, *"good", "enter")
        await until(pilot, lambda: len(client.history(Query(job="report")).records) == 2)
        again = client.history(Query(job="report")).records[0]
        await until(
            pilot, lambda: final_records(vault).get(again.id, {}).get("status") == "success"
        )
        assert written(vault, again.id) == "good/k-default"


async def test_the_palette_offers_run_with_for_jobs_with_params(make_vault) -> None:
    vault = make_vault(JOBS)
    async with console(vault) as (app, _pilot, _client):
        titles = [command.title for command in app.get_system_commands(app.main)]
        assert "Run report with…" in titles and "Run plain with…" not in titles
        assert "Params" in titles  # the key itself, with its help line
