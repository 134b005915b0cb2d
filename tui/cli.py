"""The `watchkeeper` command: the bare command (console, --once, --daemon, --status,
--version) and the registration of every subcommand, one module per group. Exit codes:
0 ok, 1 a job failed, 2 usage or config error, 3 another keeper holds the vault, 4 no
keeper running (--status).

Each command module imports only typer and tui.cli_common at load time, and what its
command needs when it runs: `history`, `--status` and `jobs` start without asyncio or
textual (tests/test_hygiene.py holds them to it)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tui import (
    cli_describe,
    cli_history,
    cli_logs,
    cli_ops,
    cli_run,
    cli_service,
    cli_status,
    cli_vault,
)
from tui.cli_common import (
    EXIT_LOCKED,
    HELP_OPTIONS,
    JsonOption,
    VaultOption,
    fail,
    locate_vault,
    open_config,
)

app = typer.Typer(
    name="watchkeeper",
    help="Keeps watch over a file-based task vault: runs its jobs, records every run.",
    add_completion=False,
    no_args_is_help=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)

for module in (
    cli_vault,
    cli_status,
    cli_history,
    cli_run,
    cli_ops,
    cli_logs,
    cli_describe,
    cli_service,
):
    module.register(app)


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
        from tui import cli_keeper

        config = open_config(ctx, vault)
        raise typer.Exit(cli_keeper.dry_run(config) if dry_run else cli_keeper.once(config))
    if daemon:
        from tui import cli_keeper

        raise typer.Exit(cli_keeper.daemon(open_config(ctx, vault)))
    if status:
        raise typer.Exit(cli_status.status(open_config(ctx, vault, demo=True), as_json))
    if not sys.stdout.isatty():
        # A pipe, cron or CI gets the status; its exit code stays 0: only the explicit
        # --status is a health check.
        cli_status.status(open_config(ctx, vault, demo=True), as_json)
        return
    # The console's alternate screen hides what was printed before it: it says the
    # first-run note itself.
    found, source = locate_vault(ctx, vault, demo=True)
    first_run = source == "default" and not (found / "watchkeeper.toml").exists()
    config = open_config(ctx, vault, demo=True)
    from core.control import ControlUnavailable
    from tui.app import run_console

    notices = [f"created the demo vault at {config.vault}"] if first_run else []
    try:
        code = run_console(config, notices)
    except ControlUnavailable as error:
        raise fail(f"cannot attach: {error}", EXIT_LOCKED) from None
    raise typer.Exit(code)


def main() -> None:
    from core.logsdir import LogsAccessError

    try:
        app()
    except LogsAccessError as error:
        # Another user's private Logs/, or a disk that refuses: which file, not a traceback.
        raise SystemExit(fail(str(error)).exit_code) from None
