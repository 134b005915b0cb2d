"""The options typer declares alike on many commands. Only the typer side of the command
line imports this (tui/cli/app.py and the command modules that register with typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.tui.cli.common import HELP_OPTIONS

VaultOption = Annotated[
    Path | None,
    typer.Option(
        "--vault",
        help="Vault folder (else $WATCHKEEPER_VAULT, else the nearest folder up holding "
        "watchkeeper.toml; the console, --status, jobs and init fall back to the demo "
        "vault in the user data dir).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Stable JSON output.")]


def command_group(help: str) -> typer.Typer:
    """A group of subcommands (`watchkeeper token add`): its bare name prints its help, and
    it takes -h and plain help text as every command does."""
    return typer.Typer(
        help=help, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_OPTIONS
    )
