"""`watchkeeper pause [JOB]` and `resume [JOB] [--preview] [--skip-missed]`: through
the running keeper, else in the vault's state file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tui.cli_common import VaultOption, ask, keeper_link, open_config, through, unknown_job

if TYPE_CHECKING:
    from core.config import JobConfig
    from core.control import Connection
    from core.state import RuntimeState

JobArgument = Annotated[
    str | None,
    typer.Argument(help="A job of the config; without it: everything.", show_default=False),
]


def register(app: typer.Typer) -> None:
    app.command()(pause)
    app.command()(resume)


def pause(ctx: typer.Context, job: JobArgument = None, vault: VaultOption = None) -> None:
    """Pause a job, or without JOB everything: through the running keeper, else in the
    state file (a keeper without a control socket is told with SIGHUP)."""
    config = open_config(ctx, vault)
    if job is not None and job not in config.jobs:
        raise unknown_job(config, job)
    connection, _ = keeper_link(config.vault)
    if connection is not None:
        with connection:
            answer = ask(connection, "pause", job=job)
            what = "everything is" if job is None else f"{job} is"
            if answer.get("changed") is False:
                typer.echo(f"{what} already paused ({through(connection)})")
            else:
                typer.echo(f"paused {job or 'everything'} ({through(connection)})")
            return
    from core.lock import ask_keeper_to_reload
    from core.state import load_state, save_state

    state = load_state(config.vault)
    if job is None:
        if state.paused:
            typer.echo("everything is already paused")
            return
        state.paused = True
    elif job in state.paused_jobs:
        typer.echo(f"{job} is already paused")
        return
    else:
        state.paused_jobs.add(job)
    save_state(config.vault, state)
    typer.echo(f"paused {job or 'everything'} ({ask_keeper_to_reload(config.vault)})")


def resume(
    ctx: typer.Context,
    job: JobArgument = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="List the runs a resume would fire; change nothing."),
    ] = False,
    skip_missed: Annotated[
        bool,
        typer.Option(
            "--skip-missed", help="Leave out the catch-up runs of slots missed while paused."
        ),
    ] = False,
    vault: VaultOption = None,
) -> None:
    """Resume a job, or without JOB everything: through the running keeper, else in the
    state file (a keeper without a control socket is told with SIGHUP).

    Resuming everything lifts the global pause; jobs paused by name stay paused. What
    piled up while paused (queued runs, waiting files, one catch-up run for missed
    slots) is released under the overlap and quota rules: --preview lists it.
    """
    config = open_config(ctx, vault)
    connection, _ = keeper_link(config.vault)
    if connection is not None:
        if job is not None and job not in config.jobs:
            connection.close()
            raise unknown_job(config, job)
        with connection:
            _resume_through(connection, job, preview, skip_missed)
            return
    from core.lock import ask_keeper_to_reload
    from core.state import RuntimeState, load_state, save_state

    state = load_state(config.vault)
    # A paused name no longer in the config may still be resumed, to clear it from the state.
    if job is not None and job not in config.jobs and job not in state.paused_jobs:
        raise unknown_job(config, job)
    after = RuntimeState(
        paused=state.paused and job is not None,
        paused_jobs=state.paused_jobs - {job} if job is not None else set(state.paused_jobs),
        theme=state.theme,
    )
    waking = [
        spec
        for name, spec in config.jobs.items()
        if state.is_paused(name) and not after.is_paused(name)
    ]
    still = sorted(after.paused_jobs)
    if preview:
        _preview(waking, after, still)
        return
    if after == state:
        if job is not None:
            note = "; everything is paused: `watchkeeper resume` lifts that" if state.paused else ""
            typer.echo(f"{job} is not paused on its own{note}")
        else:
            note = f"; paused by name: {', '.join(still)} (resume each by name)" if still else ""
            typer.echo(f"nothing to resume: there is no global pause{note}")
        return
    save_state(config.vault, after)
    message = f"resumed {job or 'everything'} ({ask_keeper_to_reload(config.vault)})"
    if job is not None and job not in config.jobs:
        message += f"; {job} is not in the current config"
    if job is not None and after.paused:
        message += "; everything is still paused: `watchkeeper resume` lifts that"
    if job is None and still:
        message += f"; still paused by name: {', '.join(still)}"
    typer.echo(message)


def _resume_through(connection: Connection, job: str | None, preview: bool, skip: bool) -> None:
    from core.resume import ResumePlan, describe

    answer = ask(connection, "resume", job=job, preview=preview, missed=not skip)
    plan = ResumePlan.from_json(answer["plan"])
    for line in describe(plan):
        typer.echo(line)
    if preview:
        typer.echo(f"preview: nothing changed ({through(connection)})")
        return
    if answer.get("changed") is False:
        what = f"{job} is not paused" if job else "there is no global pause"
        typer.echo(f"nothing to resume: {what} ({through(connection)})")
        return
    left_out = [run for run in plan.runs if run.outcome == "left out"]
    note = f"; left out {len(left_out)} missed run(s)" if left_out else ""
    typer.echo(f"resumed {job or 'everything'} ({through(connection)}){note}")


def _preview(waking: list[JobConfig], after: RuntimeState, still: list[str]) -> None:
    """The jobs a resume would make active again. What each would fire right away (catch-up
    runs, queued files) only the running keeper knows; this says so instead of guessing."""
    if waking:
        typer.echo(f"resuming makes {len(waking)} job(s) active again (jobs only, not their runs):")
        width = max(len(spec.name) for spec in waking)
        for spec in waking:
            note = "  (disabled: runs only when named)" if not spec.enabled else ""
            typer.echo(f"  {spec.name:<{width}}  {spec.trigger_summary}{note}")
    else:
        typer.echo("resuming makes no job active again")
    if waking:
        typer.echo("no keeper is running: nothing starts until one does")
    if after.paused:
        typer.echo("everything stays paused")
    elif still:
        typer.echo(f"still paused by name: {', '.join(still)}")
    typer.echo("preview: nothing changed")
