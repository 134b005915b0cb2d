"""`watchkeeper --once [--dry-run]` and `--daemon`: a keeper in this process, holding
the vault's lock."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from watchkeeper.tui.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    FAILED_STATUSES,
    acquire_lock,
    duration_text,
    echo,
)

if TYPE_CHECKING:
    from watchkeeper.core.config import Config


def dry_run(config: Config) -> int:
    """What --once would run, from the same plan --once follows."""
    from watchkeeper.core.once import dry_run as plan_lines

    for line in plan_lines(config):
        echo(line)
    return EXIT_OK


def once(config: Config) -> int:
    import asyncio

    from watchkeeper.core.history import status_label
    from watchkeeper.core.keeper import Keeper
    from watchkeeper.core.once import run_once

    lock = acquire_lock(config.vault)
    keeper = Keeper(config, lock)
    finished: list[dict] = []

    async def drive() -> None:
        subscription = keeper.bus.subscribe(maxsize=100_000)
        await keeper.start(files=False)
        await run_once(keeper)
        await keeper.stop()
        while (event := subscription.get_nowait()) is not None:
            if event.kind == "run_finished":
                finished.append(event.data)

    try:
        asyncio.run(drive())
    finally:
        lock.release()
    for record in finished:
        error = f"  {record['error']}" if record["error"] else ""
        echo(
            f"{status_label(record['status'])}  {record['taskId']}  "
            f"{duration_text(record['duration'])}{error}"
        )
    if not finished:
        echo("nothing to run: no enabled scheduled job")
    failed = [record for record in finished if record["status"] in FAILED_STATUSES]
    return EXIT_JOB_FAILED if failed else EXIT_OK


def daemon(config: Config) -> int:
    import asyncio
    import os

    if config.cluster is not None:
        # The lease decides who leads, not the vault's lock (core/cluster/daemon.py).
        from watchkeeper.core.cluster.daemon import run_cluster_daemon

        return run_cluster_daemon(config)

    from watchkeeper.core.daemon import run_daemon
    from watchkeeper.core.keeper import Keeper

    lock = acquire_lock(config.vault)
    keeper = Keeper(config, lock)
    # Under systemd, stderr is the journal: mirror the keeper log there.
    keeper.log.listeners.append(
        lambda stamp, level, message: print(f"{level:<5} {message}", file=sys.stderr, flush=True)
    )
    echo(f"watchkeeper: keeper pid {os.getpid()} on {config.vault}", err=True)
    try:
        asyncio.run(run_daemon(keeper))
    finally:
        lock.release()
    return EXIT_OK
