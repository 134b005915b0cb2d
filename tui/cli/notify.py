"""`watchkeeper notify test NAME`: one test message to a [notify.NAME] channel, every
attempt's outcome printed (URL secrets masked); exit 0 when it went, 1 when it did not,
2 for a channel the config does not have."""

from __future__ import annotations

import typer

from watchkeeper.tui.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    did_you_mean,
    echo,
    fail,
    open_config,
    vault_flag,
)
from watchkeeper.tui.cli.options import VaultOption, command_group

notify_app = command_group("Notification channels ([notify.NAME] in the config).")


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")


class _Terminal:
    """The notifier's log lines, on the terminal instead of the keeper log."""

    def info(self, message: str) -> None:
        echo(message)

    def warning(self, message: str) -> None:
        echo(message, err=True)

    def error(self, message: str) -> None:
        echo(message, err=True)


@notify_app.command()
def test(
    ctx: typer.Context,
    name: str = typer.Argument(help="The channel: NAME of a [notify.NAME] table."),
    vault: VaultOption = None,
) -> None:
    """Send one test notification to channel NAME, retried as the keeper would; exit 0
    when it was delivered, 1 when every attempt failed, 2 for an unknown channel."""
    config = open_config(vault_flag(ctx, vault))
    if name not in config.notify:
        known = ", ".join(sorted(config.notify)) or f"none: add a [notify.{name}] table"
        raise fail(f"unknown notify channel {name!r}{did_you_mean(name, config.notify)} "
                   f"(channels: {known})")
    # Only now: the other commands' start stays free of asyncio (tests/test_hygiene.py).
    import asyncio
    import socket

    from watchkeeper.core.notify import Notifier

    async def send() -> bool:
        notifier = Notifier(_Terminal(), socket.gethostname())
        notifier.attach(asyncio.get_running_loop(), config)
        return await notifier.test(name)

    raise typer.Exit(EXIT_OK if asyncio.run(send()) else EXIT_JOB_FAILED)
