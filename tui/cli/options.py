"""The options typer declares alike on many commands. Only the typer side of the command
line imports this (tui/cli/app.py and the command modules that register with typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
