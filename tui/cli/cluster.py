"""`watchkeeper cluster status [--json]`: the cluster's leader, standbys, workers and queues
as the database has them (core/cluster/status.py), readable or as stable JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from watchkeeper.tui.cli.common import echo, fail, open_config, print_json, vault_flag
from watchkeeper.tui.cli.options import JsonOption, VaultOption, command_group

if TYPE_CHECKING:
    from watchkeeper.core.cluster.status import ClusterStatus

cluster_app = command_group(
    "Cluster mode ([cluster] in the config): who leads, standbys, workers, queues."
)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")


@cluster_app.command()
def status(ctx: typer.Context, vault: VaultOption = None, as_json: JsonOption = False) -> None:
    """Leader (epoch, lease left), standbys, workers (labels, heartbeat, runs in flight)
    and queue depth per label set, read from the cluster's database. Exit 2 without a
    [cluster] table or when the database cannot be reached."""
    config = open_config(vault_flag(ctx, vault))
    if config.cluster is None:
        raise fail(f"not in cluster mode: no [cluster] table in {config.path}")
    # Only now: psycopg is for cluster mode alone.
    from watchkeeper.core.cluster.db import connect_sync
    from watchkeeper.core.cluster.dsn import DatabaseUnavailable
    from watchkeeper.core.cluster.status import read_status

    cluster = config.cluster
    try:
        with connect_sync(cluster.database) as conn:
            found = read_status(conn, cluster.name, cluster.database, cluster.lease)
    except DatabaseUnavailable as error:
        raise fail(str(error)) from None
    if as_json:
        print_json(found)
    else:
        show(found)


def table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns two spaces apart, as the other tables, but never through rich: a keeper id
    (host:100:ab12) holds what rich would print as an emoji code."""
    widths = [max(len(row[index]) for row in [headers, *rows]) for index in range(len(headers))]
    for row in [headers, *rows]:
        echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


def show(found: ClusterStatus) -> None:
    echo(f"cluster {found['cluster']} on {found['database']}")
    leader = found["leader"]
    if leader is None:
        echo("leader: none (no keeper has led this cluster yet)")
    elif not leader["leads"]:
        echo(
            f"leader: none now: the lease of {leader['host']} pid {leader['pid']} (epoch "
            f"{leader['epoch']}) lapsed {_seconds(-leader['lease_left_s'])} ago"
        )
    else:
        echo(
            f"leader: {leader['host']} pid {leader['pid']} epoch {leader['epoch']} "
            f"(lease left {_seconds(leader['lease_left_s'])}) socket {leader['socket']}"
        )
    echo()
    if found["standbys"]:
        table(
            ["STANDBY", "HOST", "PID", "SEEN"],
            [
                [k["keeper_id"], k["host"], str(k["pid"]), f"{_seconds(k['seen_age_s'])} ago"]
                for k in found["standbys"]
            ],
        )
    else:
        echo("standbys: none")
    echo()
    if found["workers"]:
        table(
            ["WORKER", "HOST", "LABELS", "SLOTS", "HEARTBEAT", "RUNS"],
            [
                [
                    w["worker_id"],
                    w["host"],
                    ",".join(w["labels"]) or "—",
                    f"{len(w['runs'])}/{w['concurrency']}",
                    f"{_seconds(w['heartbeat_age_s'])} ago" + ("" if w["alive"] else " LOST"),
                    " ".join(run["run_id"] for run in w["runs"]) or "—",
                ]
                for w in found["workers"]
            ],
        )
    else:
        echo("workers: none")
    echo()
    if found["queues"]:
        table(
            ["QUEUE", "LABELS", "WAITING", "TAKEN"],
            [
                [q["queue"], ",".join(q["labels"]) or "—", str(q["todo"]), str(q["doing"])]
                for q in found["queues"]
            ],
        )
    else:
        echo("queues: empty")
