"""`watchkeeper worker [--labels a,b] [--concurrency N]`: run this cluster's runs on this
host (core/cluster/worker.py). Needs the vault's [cluster] table: the database, the
cluster's name."""

from __future__ import annotations

from typing import Annotated

import typer

from watchkeeper.tui.cli.common import fail, open_config, vault_flag
from watchkeeper.tui.cli.options import VaultOption


def register(app: typer.Typer) -> None:
    app.command(name="worker")(worker)


def worker(
    ctx: typer.Context,
    vault: VaultOption = None,
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            help="What this host offers, comma-separated (gpu,linux): it takes the runs of "
            'jobs whose runs_on lists only labels it has, and every runs_on = "any" run.',
        ),
    ] = "",
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1000, help="Runs at once on this host.")
    ] = 4,
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            min=0.1,
            max=10.0,
            hidden=True,  # tests: a lapse of seconds, not the 30 s a leader waits for
            help="Seconds between heartbeats.",
        ),
    ] = 10.0,
) -> None:
    """Run this cluster's runs on this host until SIGINT/SIGTERM (needs [cluster])."""
    config = open_config(vault_flag(ctx, vault))
    if config.cluster is None:
        raise fail(f"{config.path} has no [cluster] table: a worker serves a cluster's keepers")
    import asyncio

    from watchkeeper.core.cluster.queue import queues_of
    from watchkeeper.core.config_cluster import labels as parse_labels

    try:
        own = parse_labels(labels)
        queues_of(config.cluster.name, own)
    except ValueError as error:
        raise fail(f"--labels: {error}") from None

    from watchkeeper.core.cluster.dsn import DatabaseUnavailable
    from watchkeeper.core.cluster.schema import SchemaTooNew
    from watchkeeper.core.cluster.worker import WorkerSettings, run_worker

    settings = WorkerSettings(
        dsn=config.cluster.database,
        cluster=config.cluster.name,
        labels=own,
        concurrency=concurrency,
        heartbeat=heartbeat,
    )
    try:
        asyncio.run(run_worker(settings))
    except (DatabaseUnavailable, SchemaTooNew) as error:
        raise fail(str(error)) from None
