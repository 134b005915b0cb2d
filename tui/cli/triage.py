"""`watchkeeper approve PATH` and `dismiss PATH --reason TEXT`: an operator's decision on
an item waiting in Needs_Action/ (core/triage.py), through the running keeper when one
runs (it records and announces it), else here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.tui.cli.common import (
    EXIT_NO_KEEPER,
    NO_VAULT,
    ask,
    echo,
    fail,
    keeper_link,
    open_config,
    through,
    vault_flag,
)
from watchkeeper.tui.cli.options import VaultOption

ItemArgument = Annotated[
    Path,
    typer.Argument(
        help="The item in Needs_Action/ (a name starting with '-' goes after `--`).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command()(approve)
    app.command()(dismiss)


def approve(ctx: typer.Context, path: ItemArgument, vault: VaultOption = None) -> None:
    """Approve an item: move it from Needs_Action/ to Plans/ (or [vault] approve_to)."""
    _decide(vault_flag(ctx, vault), path, "approved", None)


def dismiss(
    ctx: typer.Context,
    path: ItemArgument,
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", help="Why (kept in <name>.why.md beside it in Done/)."),
    ],
    vault: VaultOption = None,
) -> None:
    """Dismiss an item: move it from Needs_Action/ to Done/ with a note of why, who, when."""
    _decide(vault_flag(ctx, vault), path, "dismissed", reason)


def _decide(flag: Path | None, path: Path, outcome: str, reason: str | None) -> None:
    from watchkeeper.core.ledger import LEDGER_NAME, Ledger
    from watchkeeper.core.locations import find_vault, nearest_vault
    from watchkeeper.core.triage import Decision, NotAnItem, decide, item_of, operator

    if find_vault(flag)[1] == "default":
        # Outside any vault, the item's own path says which vault it is in.
        found = nearest_vault((path if path.is_absolute() else Path.cwd() / path).parent)
        if found is None:
            raise fail(f"{NO_VAULT}; pass --vault or a path inside a vault")
        flag = found
    config = open_config(flag)
    root = config.vault.resolve()
    if outcome == "dismissed" and not (reason or "").strip():
        raise fail("dismiss needs a reason: --reason TEXT")
    try:
        rel = item_of(root, path)
    except NotAnItem as error:
        raise fail(str(error)) from None
    connection, unreachable = keeper_link(root)
    if connection is not None:
        op = "approve" if outcome == "approved" else "dismiss"
        with connection:
            answer = ask(connection, op, path=rel, reason=reason, by=operator())
            said = Decision.from_json(answer["decision"]).said()
            echo(f"{said} ({through(connection)})")
            return
    if unreachable is not None:
        raise fail(f"a keeper holds the vault but does not answer: {unreachable}")
    if config.cluster is not None:
        raise fail(
            "no keeper of the cluster runs on this host: start one, so the decision is in"
            " the cluster's ledger",
            EXIT_NO_KEEPER,
        )
    ledger = Ledger(root / "Logs" / LEDGER_NAME)
    ledger.load()
    try:
        made = decide(root, config.vault_settings.approve_to, ledger, rel, outcome, reason)
    except NotAnItem as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot move {rel}: {error.strerror or error}") from None
    echo(made.said())
