"""`watchkeeper logs`, `pause` and `resume`, registered on the app of tui.cli."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from core.config import Config, JobConfig
from core.lock import ask_keeper_to_reload
from core.logs import rotated_name
from core.resume import ResumePlan, describe
from core.state import RuntimeState, load_state, save_state
from tui.cli import EXIT_OK, VaultOption, _ask, _config, _keeper_link, _through, app, fail

if TYPE_CHECKING:
    from core.control import Connection

JobArgument = Annotated[
    str | None,
    typer.Argument(help="A job of the config; without it: everything.", show_default=False),
]


def _unknown_job(config: Config, job: str) -> typer.Exit:
    return fail(f"no job {job!r} in {config.path}; jobs: {', '.join(config.jobs) or 'none'}")


# ---- logs -------------------------------------------------------------------------


@app.command()
def logs(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(help="This job's log; without it the keeper log.", show_default=False),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing lines as they are written (Ctrl-C)."),
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Print the last N lines first.")
    ] = 20,
    vault: VaultOption = None,
) -> None:
    """The last lines of the keeper log or of a job's log; -f follows it across rotation."""
    from core import tail

    config = _config(ctx, vault)
    logs_dir = config.vault / "Logs"
    if job is None:
        path, what = logs_dir / "watchkeeper.log", "the keeper"
    elif job in config.jobs:
        path, what = logs_dir / "jobs" / f"{job}.log", f"job {job}"
    else:
        raise _unknown_job(config, job)
    if not path.exists() and not rotated_name(path, 1).exists():
        if not follow:
            typer.echo(
                f"watchkeeper: no log yet for {what} ({path} appears when it writes)", err=True
            )
            return
        typer.echo(f"watchkeeper: no log yet for {what}; waiting for {path}", err=True)
    try:
        if follow:
            for line in tail.follow(path, lambda: False, backlog=lines):
                typer.echo(line)
        else:
            found = tail.last_lines(path, lines)
            if found:
                typer.echo("\n".join(found))
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: a normal exit, not an abort.
        raise typer.Exit(EXIT_OK) from None
    except BrokenPipeError:
        # The reader went away (`| head`). Point stdout at /dev/null so that the
        # interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_OK) from None
    except OSError as error:
        raise fail(f"cannot read {error.filename or path}: {error.strerror}") from None


# ---- pause / resume ----------------------------------------------------------------


@app.command()
def pause(ctx: typer.Context, job: JobArgument = None, vault: VaultOption = None) -> None:
    """Pause a job, or without JOB everything: through the running keeper, else in the
    state file (a keeper without a control socket is told with SIGHUP)."""
    config = _config(ctx, vault)
    connection, _ = _keeper_link(config.vault)
    if connection is not None:
        with connection:
            _ask(connection, "pause", job=job)
            typer.echo(f"paused {job or 'everything'} ({_through(connection)})")
            return
    state = load_state(config.vault)
    if job is None:
        if state.paused:
            typer.echo("everything is already paused")
            return
        state.paused = True
    elif job not in config.jobs:
        raise _unknown_job(config, job)
    elif job in state.paused_jobs:
        typer.echo(f"{job} is already paused")
        return
    else:
        state.paused_jobs.add(job)
    save_state(config.vault, state)
    typer.echo(f"paused {job or 'everything'} ({ask_keeper_to_reload(config.vault)})")


@app.command()
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
    config = _config(ctx, vault)
    connection, _ = _keeper_link(config.vault)
    if connection is not None:
        with connection:
            _resume_through(connection, job, preview, skip_missed)
            return
    state = load_state(config.vault)
    # A paused name no longer in the config may still be resumed, to clear it from the state.
    if job is not None and job not in config.jobs and job not in state.paused_jobs:
        raise _unknown_job(config, job)
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
    answer = _ask(connection, "resume", job=job, preview=preview, missed=not skip)
    plan = ResumePlan.from_json(answer["plan"])
    for line in describe(plan):
        typer.echo(line)
    if preview:
        typer.echo(f"preview: nothing changed ({_through(connection)})")
        return
    left_out = [run for run in plan.runs if run.optional and skip]
    note = f"; left out {len(left_out)} missed run(s)" if left_out else ""
    typer.echo(f"resumed {job or 'everything'} ({_through(connection)}){note}")


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
