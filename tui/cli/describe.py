"""`watchkeeper describe JOB [-n N] [--json]`: a job's config, its state and its next
fire times, as the console's job screen shows them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from watchkeeper.tui.cli.common import (
    keeper_link,
    local_time,
    open_config,
    print_json,
    try_ask,
    unknown_job,
    vault_flag,
)
from watchkeeper.tui.cli.options import JsonOption, VaultOption


def register(app: typer.Typer) -> None:
    app.command()(describe)


def describe(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job to describe.")],
    count: Annotated[
        int, typer.Option("--next", "-n", min=0, help="How many next fire times to list.")
    ] = 5,
    vault: VaultOption = None,
    as_json: JsonOption = False,
) -> None:
    """A job's config, whether it is paused, its last and current runs, its next N fire
    times (interval slots from the running keeper when there is one)."""
    from dataclasses import asdict
    from datetime import datetime

    from watchkeeper.core.firetimes import fire_times
    from watchkeeper.core.history import status_label
    from watchkeeper.core.triggers import job_zone
    from watchkeeper.core.units import format_duration

    config = open_config(vault_flag(ctx, vault))
    spec = config.jobs.get(job)
    if spec is None:
        raise unknown_job(config, job)
    tz = config.keeper.tz
    view = _view(config, job)
    now = datetime.now(tz)
    times = fire_times(spec, view, now, tz, count)
    if as_json:
        settings: dict[str, Any] = asdict(spec)
        print_json(
            {
                "name": job,
                "config": settings,
                "paused": view.get("paused", False),
                "last": view.get("last"),
                "running": view.get("running", []),
                "next": [
                    {"time": fire.moment.isoformat(timespec="seconds"), "source": fire.source}
                    for fire in times
                ],
            }
        )
        return
    from watchkeeper.core.jobinfo import config_rows

    rows = config_rows(spec, config.path.name)
    rows.append(("paused", "yes" if view.get("paused") else "no"))
    last = view.get("last")
    if last:
        when = local_time(last.get("completedAt") or last.get("startedAt"), tz)
        rows.append(("last run", f"{status_label(last['status'])} {when}"))
    if view.get("running"):
        rows.append(("running", "▶ " + ", ".join(run["id"] for run in view["running"])))
    width = max(len(key) for key, _ in rows)
    typer.echo(f"job {job}")
    for key, value in rows:
        typer.echo(f"  {key:<{width}}  {value}")
    if times:
        typer.echo(f"next {len(times)} fire time(s):")
        for fire in times:
            wait = format_duration(max(0.0, (fire.moment - now).total_seconds()))
            local = fire.moment.astimezone(job_zone(spec, tz))
            typer.echo(f"  {local:%Y-%m-%d %H:%M:%S %Z}  in {wait}  ({fire.source})")
        if view.get("paused"):
            typer.echo("  (paused: these slots are missed until it is resumed)")
    elif not spec.enabled:
        typer.echo("next runs: none (disabled: it runs only when named)")
    elif count:
        typer.echo("next runs: no schedule (it runs on files, after jobs or by hand)")


def _view(config: Any, job: str) -> dict[str, Any]:
    """The job as the running keeper sees it (its interval phase), else from the files."""
    connection, _ = keeper_link(config.vault)
    if connection is not None:
        answer = try_ask(connection, "jobs")
        if answer is not None:
            for view in answer["jobs"]:
                if view["name"] == job:
                    return dict(view)
    from watchkeeper.core.status import jobs_view

    return next((view for view in jobs_view(config) if view["name"] == job), {})
