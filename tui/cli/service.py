"""`watchkeeper service install|uninstall [--dry-run]`: a systemd user unit that runs the
keeper headless."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.tui.cli.common import (
    EXIT_JOB_FAILED,
    fail,
    open_config,
    vault_flag,
    vault_path,
)
from watchkeeper.tui.cli.options import VaultOption, command_group

# Exit 1 is the design's "something failed" code; here systemd or the disk did.
EXIT_FAILED = EXIT_JOB_FAILED
COMMAND_TIMEOUT = 60.0

service_app = command_group("A systemd user unit that runs the keeper headless (--daemon).")


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")


DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the unit and the commands; write and run nothing."),
]


def _show(command: list[str]) -> str:
    return shlex.join(command)


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.strip().splitlines())


def _run(command: list[str]) -> None:
    """Run one systemctl command, print it and its result; a failure ends the command."""
    typer.echo(f"$ {_show(command)}")
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise fail(
            f"`{_show(command)}` did not finish within {COMMAND_TIMEOUT:g}s", EXIT_FAILED
        ) from None
    except OSError as error:
        reason = error.strerror or error
        raise fail(f"cannot run `{_show(command)}`: {reason}", EXIT_FAILED) from None
    if result.returncode != 0:
        if result.stdout.strip():
            typer.echo(_indented(result.stdout))
        if result.stderr.strip():
            typer.echo(_indented(result.stderr), err=True)
        raise fail(f"`{_show(command)}` failed (exit {result.returncode})", EXIT_FAILED)
    typer.echo("  ok")
    # systemctl reports what it did ("Created symlink ...") on stderr.
    for output in (result.stdout, result.stderr):
        if output.strip():
            typer.echo(_indented(output))


def _would_run(commands: list[list[str]]) -> None:
    typer.echo("would run:")
    for command in commands:
        typer.echo(f"  {_show(command)}")


def _absent_note(absent: str | None, verb: str) -> None:
    if absent is not None:
        typer.echo(f"note: {absent}; a real {verb} would stop here (exit 1)")


WorkerOption = Annotated[
    bool,
    typer.Option("--worker", help="The unit of this host's cluster worker, not the keeper's."),
]


ServeOption = Annotated[
    bool,
    typer.Option("--serve", help="The unit of `watchkeeper serve` (HTTP), not the keeper's."),
]


@service_app.command()
def install(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    vault: VaultOption = None,
    worker: WorkerOption = False,
    labels: Annotated[
        str, typer.Option("--labels", help="With --worker: the worker's --labels.")
    ] = "",
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="With --worker: the worker's --concurrency."),
    ] = None,
    serve: ServeOption = False,
    bind: Annotated[
        str | None, typer.Option("--bind", help="With --serve: serve's --bind HOST:PORT.")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="With --serve: serve's --read-only.")
    ] = False,
) -> None:
    """Write a systemd user unit that runs this vault's keeper (with --worker: this
    host's cluster worker; with --serve: `watchkeeper serve`), enable and start it.

    Installing again rewrites a unit that differs and leaves an identical one alone.
    """
    from watchkeeper.core import service
    from watchkeeper.core.atomic import write_atomic

    config = open_config(vault_flag(ctx, vault))
    if not worker and (labels or concurrency is not None):
        raise fail("--labels and --concurrency go with --worker")
    if worker and serve:
        raise fail("--worker and --serve are two units: install them one at a time")
    if worker and config.cluster is None:
        raise fail(f"{config.path} has no [cluster] table: a worker serves a cluster")
    if not serve and (bind is not None or read_only):
        raise fail("--bind and --read-only go with --serve")
    serve_options = _serve_options(bind, read_only)
    root = config.vault.resolve()
    name = service.unit_name(root, worker, serve)
    path = service.unit_path(name)
    timeout = service.stop_timeout(config.keeper)
    options = ["--labels", labels] if labels else []
    if concurrency is not None:
        options += ["--concurrency", str(concurrency)]
    if labels:
        from watchkeeper.core.config_cluster import labels as parse_labels

        try:
            parse_labels(labels)
        except ValueError as error:
            raise fail(f"--labels: {error}") from None
    try:
        if worker:
            text = service.worker_unit_text(root, service.launcher(), options, timeout)
        elif serve:
            text = service.serve_unit_text(root, service.launcher(), serve_options)
        else:
            text = service.unit_text(root, service.launcher(), timeout)
    except ValueError as error:
        raise fail(str(error)) from None
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read {path}: {error}", EXIT_FAILED) from None
    change = "new" if existing is None else "unchanged" if existing == text else "replaced"
    commands = service.install_commands(name)
    absent = service.systemd_absence()
    if dry_run:
        typer.echo("dry run: nothing is written and nothing is run")
        typer.echo(f"unit file: {path} (would be {change}, mode 0644)")
        typer.echo(text)
        _would_run(commands)
        _absent_note(absent, "install")
        return
    if absent is not None:
        raise fail(f"{absent}; nothing written", EXIT_FAILED)
    if change != "unchanged":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
        except OSError as error:
            raise fail(
                f"cannot write {error.filename or path}: {error.strerror or error}", EXIT_FAILED
            ) from None
    typer.echo(f"unit file: {path} ({change})")
    typer.echo(text)
    for command in commands:
        _run(command)
    what = "worker" if worker else "HTTP server (serve)" if serve else "keeper"
    typer.echo(f"installed {name}: it runs the {what} of {root}")
    if change == "replaced":
        typer.echo(
            "if it was already running, it keeps the old settings until: "
            f"{_show([*service.SYSTEMCTL, 'restart', name])}"
        )
    typer.echo(f"  status: {_show([*service.SYSTEMCTL, 'status', name])}")
    typer.echo(f"  log:    {_show(['journalctl', '--user', '-u', name, '-f'])}")
    typer.echo("  to keep it running while you are logged out: loginctl enable-linger")


def _serve_options(bind: str | None, read_only: bool) -> list[str]:
    """serve's own flags, its --bind checked now rather than by a unit failing at boot."""
    options: list[str] = []
    if bind is not None:
        from watchkeeper.core.serve.run import parse_bind

        try:
            parse_bind(bind)
        except ValueError as error:
            raise fail(str(error)) from None
        options += ["--bind", bind]
    if read_only:
        options.append("--read-only")
    return options


@service_app.command()
def uninstall(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    vault: VaultOption = None,
    worker: WorkerOption = False,
    serve: ServeOption = False,
) -> None:
    """Stop and disable this vault's unit (with --worker: its worker's, --serve: its
    serve's), remove its file.

    Needs no valid config: a broken or deleted vault can still be uninstalled.
    """
    from watchkeeper.core import service

    root: Path = vault_path(vault_flag(ctx, vault)).resolve()
    name = service.unit_name(root, worker, serve)
    path = service.unit_path(name)
    if not path.exists():
        typer.echo(f"not installed: no {path}")
        return
    before, after = service.uninstall_commands(name)
    absent = service.systemd_absence()
    if dry_run:
        typer.echo("dry run: nothing is removed and nothing is run")
        typer.echo("would run:")
        typer.echo(f"  {_show(before)}")
        typer.echo(f"  rm {shlex.quote(str(path))}")
        typer.echo(f"  {_show(after)}")
        _absent_note(absent, "uninstall")
        return
    if absent is not None:
        raise fail(f"{absent}; nothing removed", EXIT_FAILED)
    _run(before)
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise fail(f"cannot remove {path}: {error.strerror or error}", EXIT_FAILED) from None
    typer.echo(f"removed {path}")
    _run(after)
    typer.echo(f"uninstalled {name}")
