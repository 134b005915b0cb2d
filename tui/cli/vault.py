"""`watchkeeper init [PATH]`, `validate [FILE]` and `requeue PATH`: a vault's own files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.tui.cli.common import NO_VAULT, fail, open_config, read_config, vault_flag
from watchkeeper.tui.cli.options import VaultOption

if TYPE_CHECKING:
    from watchkeeper.core.config_cluster import ClusterConfig


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(validate)
    app.command()(requeue)


def init(
    path: Annotated[Path | None, typer.Argument(help="Folder for the new vault.")] = None,
) -> None:
    """Create a vault: folders, demo scripts and a commented example config."""
    from watchkeeper.core.scaffold import init_vault

    target = (path or Path.cwd()).expanduser().absolute()
    created = init_vault(target)
    for item in created:
        typer.echo(f"created {item}")
    if not created:
        typer.echo(f"{target} already holds a vault; nothing changed")
    typer.echo(f"next: watchkeeper --vault {target}")


def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A config file (any name) or a vault folder; without it the vault's.",
            show_default=False,
        ),
    ] = None,
    vault: VaultOption = None,
    limits: Annotated[
        bool,
        typer.Option("--limits", help="Show how this host enforces limits, used or not."),
    ] = False,
) -> None:
    """Check a config; each error names file:line and key. Exit 0 valid, 2 not. With
    resource limits in it (or --limits), says how this host enforces each."""
    from watchkeeper.core.config import CONFIG_NAME

    if file is None:
        config = open_config(vault_flag(ctx, vault), hint="pass --vault or a path")
    else:
        if vault_flag(ctx, vault) is not None:
            raise fail("give a config file or --vault, not both")
        target = file.expanduser()
        if target.is_dir():
            target = target / CONFIG_NAME
        if not target.is_file():
            raise fail(f"no config file at {target}")
        config = read_config(target)
    typer.echo(f"{config.path}: ok, {len(config.jobs)} job(s)")
    from watchkeeper.core.limits import used_limits

    used = used_limits(config.jobs.values())
    if used or limits:
        from watchkeeper.core.limits_host import enforcement_lines, host_limits

        for line in enforcement_lines(host_limits(), used):
            typer.echo(line)


def requeue(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The quarantined file (in Needs_Action/).")],
    vault: VaultOption = None,
) -> None:
    """Put a quarantined file back where it came from, to be handed over again."""
    from watchkeeper.core.handover import requeue as put_back
    from watchkeeper.core.ledger import LEDGER_NAME, Ledger
    from watchkeeper.core.locations import find_vault, nearest_vault
    from watchkeeper.core.lock import ask_keeper_to_reload
    from watchkeeper.core.names import shown

    absolute = path if path.is_absolute() else Path.cwd() / path
    if find_vault(vault_flag(ctx, vault))[1] == "default":
        # Outside any vault, the file's own path may say which vault it is in.
        found = nearest_vault(absolute.parent)
        if found is None:
            raise fail(f"{NO_VAULT}; pass --vault or a path inside a vault")
        vault = found
    config = open_config(vault_flag(ctx, vault))
    root = config.vault.resolve()
    if not absolute.exists() and (root / path).exists():
        absolute = root / path
    try:
        location = absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        raise fail(f"{path} is not inside the vault {root}") from None
    if config.cluster is not None:
        original = _requeue_in_cluster(config.cluster, root, location)
    else:
        ledger = Ledger(root / "Logs" / LEDGER_NAME)
        ledger.load()
        try:
            original = put_back(root, ledger, location)
        except (LookupError, OSError) as error:
            raise fail(str(error)) from None
    said = f"requeued {shown(location)} -> {shown(original)}"  # shown: a name may not be UTF-8
    typer.echo(f"{said} ({ask_keeper_to_reload(root)})")


def _requeue_in_cluster(cluster: ClusterConfig, root: Path, location: str) -> str:
    """The cluster's ledger is in its database: the leader (here or on another host)
    reads the file's new outcome there. Exit 2 when it cannot be reached."""
    from watchkeeper.core.cluster.dsn import DatabaseUnavailable
    from watchkeeper.core.cluster.offline import ClusterLedger
    from watchkeeper.core.handover import requeue as put_back
    from watchkeeper.core.ledger import LEDGER_NAME

    try:
        ledger = ClusterLedger(root / "Logs" / LEDGER_NAME, cluster)
    except DatabaseUnavailable as error:
        raise fail(str(error)) from None
    try:
        ledger.load()
        return put_back(root, ledger, location)
    except (LookupError, OSError, DatabaseUnavailable, ValueError) as error:
        raise fail(str(error)) from None
    finally:
        ledger.close()
