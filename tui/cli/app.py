"""The `watchkeeper` command line as typer knows it: the bare command (console, --once,
--daemon, --status, --version), the options of the quick commands (whose work is done in
typer-free modules, also run by tui/cli/fast.py) and the registration of every other
command group, one module each. tui/cli/main.py builds this only for what the quick path
leaves to it: other commands, -h, and every usage error."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from watchkeeper.tui.cli import cluster as cli_cluster
from watchkeeper.tui.cli import describe as cli_describe
from watchkeeper.tui.cli import history as cli_history
from watchkeeper.tui.cli import logs as cli_logs
from watchkeeper.tui.cli import notify as cli_notify
from watchkeeper.tui.cli import ops as cli_ops
from watchkeeper.tui.cli import run as cli_run
from watchkeeper.tui.cli import serve as cli_serve
from watchkeeper.tui.cli import service as cli_service
from watchkeeper.tui.cli import status as cli_status
from watchkeeper.tui.cli import tokens as cli_tokens
from watchkeeper.tui.cli import triage as cli_triage
from watchkeeper.tui.cli import vault as cli_vault
from watchkeeper.tui.cli import worker as cli_worker
from watchkeeper.tui.cli.common import (
    EXIT_LOCKED,
    HELP_OPTIONS,
    fail,
    locate_vault,
    open_config,
    vault_flag,
)
from watchkeeper.tui.cli.options import JsonOption, VaultOption

app = typer.Typer(
    name="watchkeeper",
    help="Keeps watch over a file-based task vault: runs its jobs, records every run.",
    add_completion=False,
    no_args_is_help=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"watchkeeper {version('watchkeeper')}")
    except PackageNotFoundError:
        typer.echo("watchkeeper (version unknown: not installed as a package)")
    raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    vault: VaultOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Run each enabled scheduled job once, then its after chain, and exit."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --once: show what would run.")
    ] = False,
    daemon: Annotated[
        bool, typer.Option("--daemon", help="Run headless until SIGINT/SIGTERM.")
    ] = False,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Keeper up? pid, uptime; vault counts; jobs. Exit 4 when no keeper runs.",
        ),
    ] = False,
    as_json: JsonOption = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {"vault": vault}
    if ctx.invoked_subcommand is not None:
        if once or daemon or status:
            raise fail("--once, --daemon and --status do not go with a command")
        return
    if sum((once, daemon, status)) > 1:
        raise fail("choose one of --once, --daemon, --status")
    if dry_run and not once:
        raise fail("--dry-run goes with --once")
    if once:
        from watchkeeper.tui.cli import keeper as cli_keeper

        config = open_config(vault)
        raise typer.Exit(cli_keeper.dry_run(config) if dry_run else cli_keeper.once(config))
    if daemon:
        from watchkeeper.tui.cli import keeper as cli_keeper

        raise typer.Exit(cli_keeper.daemon(open_config(vault)))
    if status:
        raise typer.Exit(cli_status.status(open_config(vault, demo=True), as_json))
    if not sys.stdout.isatty():
        # A pipe, cron or CI gets the status; its exit code stays 0: only the explicit
        # --status is a health check.
        cli_status.status(open_config(vault, demo=True), as_json)
        return
    # The console's alternate screen hides what was printed before it: it says the
    # first-run note itself.
    found, source = locate_vault(vault, demo=True)
    first_run = source == "default" and not (found / "watchkeeper.toml").exists()
    config = open_config(vault, demo=True)
    from watchkeeper.core.control_protocol import ControlUnavailable
    from watchkeeper.tui.app import run_console

    notices = [f"created the demo vault at {config.vault}"] if first_run else []
    try:
        code = run_console(config, notices)
    except ControlUnavailable as error:
        raise fail(f"cannot attach: {error}", EXIT_LOCKED) from None
    raise typer.Exit(code)


# ---- the quick commands' options (their work: cli_status, cli_history, cli_run, cli_ops) --

JobArgument = Annotated[
    str | None,
    typer.Argument(help="A job of the config; without it: everything.", show_default=False),
]


def jobs(ctx: typer.Context, vault: VaultOption = None, as_json: JsonOption = False) -> None:
    """Each job: trigger, next run, last result, paused."""
    cli_status.jobs(vault_flag(ctx, vault), as_json)


def history(
    ctx: typer.Context,
    vault: VaultOption = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only runs started since then: a duration back from now (24h, 7d) or a "
            "date/time in the vault's time zone (2026-12-01, 2026-12-01T08:00).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Then keep printing each record as it is written, oldest first (Ctrl-C); "
            "with --json one object a line.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first (with -f: oldest first, then each new record)."""
    cli_history.history(vault_flag(ctx, vault), job, status, since, limit, follow, as_json)


def stats(
    ctx: typer.Context,
    vault: VaultOption = None,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Window: a duration back from now (24h, 7d) or a date/time in the vault's "
            "time zone (2026-12-01, 2026-12-01T08:00).",
        ),
    ] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Per job: runs, success rate, p50/p95 duration."""
    cli_history.stats(vault_flag(ctx, vault), since, as_json)


def run(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job to run now.")],
    vault: VaultOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the result (a local run always waits).")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="With --wait: print the run's output as it comes, and its retries'.",
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A value for one of the job's params (repeat for more); the rest keep "
            "their defaults.",
        ),
    ] = None,
) -> None:
    """Run a job now: through the running keeper, else locally (then it always waits)."""
    cli_run.run(vault_flag(ctx, vault), job, wait, follow, param or [])


def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to end (see `history`).")],
    vault: VaultOption = None,
) -> None:
    """End a run in flight, or drop one queued or waiting to retry."""
    cli_run.cancel(vault_flag(ctx, vault), run_id)


def pause(ctx: typer.Context, job: JobArgument = None, vault: VaultOption = None) -> None:
    """Pause a job, or without JOB everything: through the running keeper, else in the
    state file (a keeper without a control socket is told with SIGHUP)."""
    cli_ops.pause(vault_flag(ctx, vault), job)


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
    cli_ops.resume(vault_flag(ctx, vault), job, preview, skip_missed)


# In the order `watchkeeper -h` lists them.
cli_vault.register(app)
for command in (jobs, history, stats, run, cancel, pause, resume):
    app.command()(command)
for module in (cli_logs, cli_describe, cli_service, cli_cluster, cli_worker, cli_notify):
    module.register(app)
cli_triage.register(app)
cli_serve.register(app)
cli_tokens.register(app)
