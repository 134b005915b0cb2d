"""The console in cluster mode: LEADER / STANDBY and the epoch in the header, and the
Workers screen (W) listing the workers from the database, under Pilot through a real
standby proxy and keeper; no Workers key without a cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from datetime import UTC
from pathlib import Path
from typing import cast

from cluster_daemons import Cluster, cluster_config
from cluster_kit import (
    CLUSTER,
    KEEPER_CONFIG,
    FakeLeader,
    busy_cluster,
    cluster_vault,
    dead_pid,
    leader_keeper,
    plain_vault,
    write_cluster_file,
)
from conftest import pilot_until, wait_for
from console_kit import console, header, screen_text

from watchkeeper.core.client import SocketClient
from watchkeeper.core.cluster.discovery import this_host
from watchkeeper.core.cluster.proxy import serve_proxy
from watchkeeper.core.cluster.role import keeper_socket
from watchkeeper.core.config import load_config
from watchkeeper.tui.app import make_app
from watchkeeper.tui.commands import screen_commands
from watchkeeper.tui.model import Model
from watchkeeper.tui.screens.confirm import ConfirmScreen
from watchkeeper.tui.screens.workers import WorkersScreen
from watchkeeper.tui.text import Clock
from watchkeeper.tui.themes import shipped_dir
from watchkeeper.tui.widgets.header import HeaderBar


def test_the_header_names_the_role_and_epoch_only_in_cluster_mode(tmp_path: Path) -> None:
    clock = Clock(UTC)
    model = Model(tmp_path / "vault")
    model.state = "RUNNING"
    plain = HeaderBar.compose_line(model, clock, 100).plain
    assert "LEADER" not in plain and "STANDBY" not in plain
    leading = {"state": "RUNNING", "role": "LEADER", "epoch": 9, "cluster": "ops"}
    model.load_snapshot(leading, clock.now())
    assert " LEADER epoch 9 " in HeaderBar.compose_line(model, clock, 100).plain
    assert " LEADER epoch 9 " in HeaderBar.compose_line(model, clock, 80).plain
    # Whatever a keeper of another version sends, the header stays whole.
    for odd in ({"role": "OBSERVER"}, {"role": "STANDBY", "epoch": "x"}, {"role": 3}, {}):
        model.load_snapshot({"state": "RUNNING", **odd}, clock.now())
        line = HeaderBar.compose_line(model, clock, 100).plain
        assert "epoch" not in line and "OBSERVER" not in line


async def test_a_console_through_a_standby_shows_standby_and_lists_the_workers(
    tmp_path: Path, pg_dsn: str
) -> None:
    await busy_cluster(pg_dsn)
    leader_vault = plain_vault(tmp_path, "leader")
    vault = cluster_vault(tmp_path, pg_dsn, "shared")
    (vault / "watchkeeper.toml").write_text(
        (vault / "watchkeeper.toml").read_text() + textwrap.dedent(KEEPER_CONFIG)
    )
    async with leader_keeper(leader_vault) as leader_socket:
        leader = FakeLeader("h:1:a", this_host(), os.getpid(), str(leader_socket), 12)

        async def find() -> FakeLeader:
            return leader

        write_cluster_file(vault, CLUSTER, 12, "h:0:z", this_host(), dead_pid(), "/gone.sock")
        proxy = await serve_proxy(keeper_socket(vault), find)
        try:
            config = load_config(vault / "watchkeeper.toml")
            client = await asyncio.to_thread(SocketClient, vault)
            app = make_app(config, client, theme_dirs=[shipped_dir()])
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot_until(pilot, lambda: app.keeper_started and "STANDBY" in header(app))
                assert " STANDBY epoch 12 " in header(app)
                await pilot_until(pilot, lambda: "Workers" in screen_text(app))

                await pilot.press("W")
                await pilot_until(pilot, lambda: isinstance(app.screen, WorkersScreen))
                screen = app.screen
                assert isinstance(screen, WorkersScreen)
                await pilot_until(pilot, lambda: "beta:4242:w1" in screen_text(app))
                text = screen_text(app)
                assert "leader alpha pid 100 · epoch 7" in text
                assert "gpu,linux" in text and "crunch:r-1" in text
                lapsed = next(line for line in text.splitlines() if "beta:4343:w2" in line)
                assert "LOST" in lapsed
                assert "wk.ops.gpu+linux" in text
                await pilot.press("escape")
                await pilot_until(pilot, lambda: not isinstance(app.screen, WorkersScreen))
                await pilot.press("q")
                await pilot_until(pilot, lambda: app.closed)
        finally:
            await proxy.close()


async def test_without_a_cluster_the_console_offers_no_workers_key(tmp_path: Path) -> None:
    vault = plain_vault(tmp_path, "plain")
    async with console(vault) as (app, pilot, _):
        await pilot_until(pilot, lambda: "Quit" in screen_text(app))
        assert "Workers" not in screen_text(app)
        assert app.main.check_action("workers", ()) is False
        assert not [c for c in screen_commands(app.main) if c.title == "Workers"]
        await pilot.press("W")
        await pilot.pause()
        assert app.screen is app.main
        await pilot.press("q")


async def test_take_over_in_cluster_mode_attaches_to_another_keeper_never_runs_one(
    tmp_path: Path, pg_dsn: str
) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "watchkeeper.toml").write_text(cluster_config(pg_dsn))
    keepers = Cluster(vault, pg_dsn)
    try:
        first, second = keepers.start(), keepers.start()
        await asyncio.to_thread(lambda: keepers_leading(keepers))
        config = load_config(vault / "watchkeeper.toml")
        app = make_app(config, theme_dirs=[shipped_dir()])
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot_until(pilot, lambda: app.keeper_started and "LEADER" in header(app))
            gone = app.client.pid
            other = second.pid if gone == first.pid else first.pid
            os.kill(gone, signal.SIGKILL)
            await pilot_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            question = cast(ConfirmScreen, app.screen).question
            assert "attach to the keeper that leads the cluster" in question
            assert "run the keeper in this console" not in question
            await pilot.press("y")
            # Attached to the keeper left (a standby forwarding, then the leader); a
            # keeper in this process would have fired outside the lease.
            await pilot_until(pilot, lambda: app.client.mode == "attach" and app.keeper_started)
            assert app.client.pid == other
            await pilot_until(pilot, lambda: "LEADER" in header(app) or "STANDBY" in header(app))
            await pilot.press("q")
            await pilot_until(pilot, lambda: app.closed)
        assert keepers.keepers[0 if other == first.pid else 1].poll() is None
    finally:
        keepers.stop_all()


def keepers_leading(keepers: Cluster) -> None:
    """Until one of them leads and has written where it listens."""
    wait_for(lambda: keepers.leader() and (keepers.vault / "Logs" / "cluster.json").exists())
