"""`watchkeeper logs [JOB | --all] [-f] [-n N]`: the keeper log, a job's output, or all
of them merged in time order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.tui.cli.common import (
    EXIT_OK,
    detach_stdout,
    fail,
    note,
    open_config,
    unknown_job,
    vault_flag,
)
from watchkeeper.tui.cli.options import VaultOption

if TYPE_CHECKING:
    from watchkeeper.core.config import Config

POLL = 0.2


def register(app: typer.Typer) -> None:
    app.command()(logs)


def logs(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(help="This job's log; without it the keeper log.", show_default=False),
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            "-a",
            help="The keeper log and every job's log merged in time order, each line "
            "labelled with its job ((keeper) for the keeper's own).",
        ),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing lines as they are written (Ctrl-C)."),
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Print the last N lines first.")
    ] = 20,
    vault: VaultOption = None,
) -> None:
    """The last lines of the keeper log, of a job's log, or of all merged (--all); -f
    follows across rotation."""
    config = open_config(vault_flag(ctx, vault))
    logs_dir = config.vault / "Logs"
    if every and job is not None:
        raise fail("give a job or --all, not both")
    try:
        if every:
            _all(logs_dir, lines, follow)
        else:
            _one(config, job, lines, follow)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: a normal exit, not an abort.
        raise typer.Exit(EXIT_OK) from None
    except BrokenPipeError:
        detach_stdout()
        raise typer.Exit(EXIT_OK) from None


def _one(config: Config, job: str | None, lines: int, follow: bool) -> None:
    from watchkeeper.core import tail
    from watchkeeper.core.logs import rotated_name

    logs_dir = config.vault / "Logs"
    if job is None:
        path, what = logs_dir / "watchkeeper.log", "the keeper"
    elif job in config.jobs:
        path, what = logs_dir / "jobs" / f"{job}.log", f"job {job}"
    else:
        raise unknown_job(config, job)
    if not path.exists() and not rotated_name(path, 1).exists():
        if not follow:
            note(f"no log yet for {what} ({path} appears when it writes)")
            return
        note(f"no log yet for {what}; waiting for {path}")
    try:
        if follow:
            for line in tail.follow(path, lambda: False, backlog=lines):
                typer.echo(line)
        else:
            found = tail.last_lines(path, lines)
            if found:
                typer.echo("\n".join(found))
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            raise
        raise fail(f"cannot read {error.filename or path}: {error.strerror}") from None


def _all(logs_dir: Path, lines: int, follow: bool) -> None:
    import time

    from watchkeeper.core.logmerge import LogsFollower, log_sources, merged_tail

    # The follower notes where each file ends before the backlog is read: a line written
    # in between shows twice rather than not at all.
    follower = LogsFollower(logs_dir) if follow else None
    sources = log_sources(logs_dir)
    width = max(len(name) for name in sources)
    for line in merged_tail(sources, lines):
        typer.echo(line.render(width))
    if follower is None:
        return
    while True:
        for line in follower.poll():
            width = max(width, len(line.source))
            typer.echo(line.render(width))
        time.sleep(POLL)
