"""`watchkeeper pause [JOB]` and `resume [JOB] [--preview] [--skip-missed]`: through
the running keeper, else in the vault's state file (the cluster's database in cluster
mode). No typer here: the quick commands run it (tui/cli/fast.py); tui/cli/app.py
declares the options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.tui.cli.common import (
    ask,
    echo,
    fail,
    keeper_link,
    open_config,
    through,
    unknown_job,
)

if TYPE_CHECKING:
    from watchkeeper.core.config import Config, JobConfig
    from watchkeeper.core.control_client import Connection
    from watchkeeper.core.state import RuntimeState


def pause(vault: Path | None, job: str | None = None) -> None:
    """`watchkeeper pause [JOB]`; `vault`: the --vault flag."""
    config = open_config(vault)
    if job is not None and job not in config.jobs:
        raise unknown_job(config, job)
    connection, _ = keeper_link(config.vault)
    if connection is not None:
        with connection:
            answer = ask(connection, "pause", job=job)
            what = "everything is" if job is None else f"{job} is"
            if answer.get("changed") is False:
                echo(f"{what} already paused ({through(connection)})")
            else:
                echo(f"paused {job or 'everything'} ({through(connection)})")
            return
    from watchkeeper.core.lock import ask_keeper_to_reload

    load_state, save_state = _state_of(config)
    state = load_state(config.vault)
    if job is None:
        if state.paused:
            echo("everything is already paused")
            return
        state.paused = True
    elif job in state.paused_jobs:
        echo(f"{job} is already paused")
        return
    else:
        state.paused_jobs.add(job)
    save_state(config.vault, state)
    echo(f"paused {job or 'everything'} ({ask_keeper_to_reload(config.vault)})")


def resume(
    vault: Path | None, job: str | None = None, preview: bool = False, skip_missed: bool = False
) -> None:
    """`watchkeeper resume [JOB]`; `vault`: the --vault flag."""
    config = open_config(vault)
    connection, _ = keeper_link(config.vault)
    if connection is not None:
        if job is not None and job not in config.jobs:
            connection.close()
            raise unknown_job(config, job)
        with connection:
            _resume_through(connection, job, preview, skip_missed)
            return
    from watchkeeper.core.lock import ask_keeper_to_reload
    from watchkeeper.core.state import RuntimeState

    load_state, save_state = _state_of(config)
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
            echo(f"{job} is not paused on its own{note}")
        else:
            note = f"; paused by name: {', '.join(still)} (resume each by name)" if still else ""
            echo(f"nothing to resume: there is no global pause{note}")
        return
    save_state(config.vault, after)
    message = f"resumed {job or 'everything'} ({ask_keeper_to_reload(config.vault)})"
    if job is not None and job not in config.jobs:
        message += f"; {job} is not in the current config"
    if job is not None and after.paused:
        message += "; everything is still paused: `watchkeeper resume` lifts that"
    if job is None and still:
        message += f"; still paused by name: {', '.join(still)}"
    echo(message)


def _state_of(
    config: Config,
) -> tuple[Callable[[Path], RuntimeState], Callable[[Path, RuntimeState], None]]:
    """Where the pauses live with no keeper to ask: the vault's state file, or in
    cluster mode the cluster's database (exit 2 naming it, masked, when it is down)."""
    if config.cluster is None:
        from watchkeeper.core.state import load_state, save_state

        return load_state, save_state
    from watchkeeper.core.cluster.dsn import DatabaseUnavailable
    from watchkeeper.core.cluster.offline import cluster_state, save_cluster_state

    cluster = config.cluster

    def load(vault: Path) -> RuntimeState:
        try:
            return cluster_state(cluster, vault)
        except DatabaseUnavailable as error:
            raise fail(str(error)) from None

    def save(vault: Path, state: RuntimeState) -> None:
        try:
            save_cluster_state(cluster, vault, state)
        except (DatabaseUnavailable, ValueError) as error:
            raise fail(str(error)) from None

    return load, save


def _resume_through(connection: Connection, job: str | None, preview: bool, skip: bool) -> None:
    from watchkeeper.core.resume import ResumePlan, describe

    answer = ask(connection, "resume", job=job, preview=preview, missed=not skip)
    plan = ResumePlan.from_json(answer["plan"])
    for line in describe(plan):
        echo(line)
    if preview:
        echo(f"preview: nothing changed ({through(connection)})")
        return
    if answer.get("changed") is False:
        what = f"{job} is not paused" if job else "there is no global pause"
        echo(f"nothing to resume: {what} ({through(connection)})")
        return
    left_out = [run for run in plan.runs if run.outcome == "left out"]
    note = f"; left out {len(left_out)} missed run(s)" if left_out else ""
    echo(f"resumed {job or 'everything'} ({through(connection)}){note}")


def _preview(waking: list[JobConfig], after: RuntimeState, still: list[str]) -> None:
    """The jobs a resume would make active again. What each would fire right away (catch-up
    runs, queued files) only the running keeper knows; this says so instead of guessing."""
    if waking:
        echo(f"resuming makes {len(waking)} job(s) active again (jobs only, not their runs):")
        width = max(len(spec.name) for spec in waking)
        for spec in waking:
            note = "  (disabled: runs only when named)" if not spec.enabled else ""
            echo(f"  {spec.name:<{width}}  {spec.trigger_summary}{note}")
    else:
        echo("resuming makes no job active again")
    if waking:
        echo("no keeper is running: nothing starts until one does")
    if after.paused:
        echo("everything stays paused")
    elif still:
        echo(f"still paused by name: {', '.join(still)}")
    echo("preview: nothing changed")
