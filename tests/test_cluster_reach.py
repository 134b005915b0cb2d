"""How the CLI and the console reach the leader in cluster mode: a standby's control
socket forwards to the leader's (a real keeper's control server), says "no leader" when
there is none, the CLI finds the leader through Logs/cluster.json or a standby's socket,
and with no keeper of the cluster here `run` and the console refuse to act alone."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cluster_kit import (
    CLUSTER,
    FakeLeader,
    ask_socket,
    cli,
    cluster_vault,
    dead_pid,
    leader_keeper,
    plain_vault,
    write_cluster_file,
)
from conftest import run_cli

from watchkeeper.core.cluster.discovery import this_host
from watchkeeper.core.cluster.proxy import serve_proxy
from watchkeeper.core.cluster.role import keeper_socket
from watchkeeper.core.config import load_config
from watchkeeper.core.control_protocol import ControlUnavailable
from watchkeeper.core.lock import holder
from watchkeeper.tui.session import connect


async def test_a_standby_forwards_requests_and_the_event_stream_to_the_leader(
    tmp_path: Path,
) -> None:
    vault = plain_vault(tmp_path, "vault")
    async with leader_keeper(vault) as leader_socket:
        leader = FakeLeader("here:1:abc", this_host(), os.getpid(), str(leader_socket), 12)

        async def find() -> FakeLeader:
            return leader

        me = {"keeper_id": "here:2:def", "host": this_host(), "pid": 424242}
        proxy = await serve_proxy(tmp_path / "standby.sock", find, me)
        try:
            status, jobs = await asyncio.to_thread(
                ask_socket, proxy.path, {"op": "status"}, {"op": "jobs"}
            )
            assert status["ok"] is True
            assert status["status"]["pid"] == os.getpid()  # the leader's own answer
            answered = status["status"]
            assert (answered["role"], answered["epoch"], answered["standby"]) == ("STANDBY", 12, me)
            assert answered["leader"] == {
                "keeper_id": "here:1:abc",
                "host": this_host(),
                "pid": os.getpid(),
                "socket": str(leader_socket),
            }
            assert sorted(job["name"] for job in jobs["jobs"]) == ["ok", "slow"]
            refused = await asyncio.to_thread(ask_socket, proxy.path, {"op": "run", "job": "nope"})
            assert refused[0]["ok"] is False and "nope" in refused[0]["error"]

            # subscribe: the snapshot, then the leader's events as they happen
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
                stream.settimeout(30)
                await asyncio.to_thread(stream.connect, str(proxy.path))
                stream.sendall(b'{"op": "subscribe"}\n')
                events = stream.makefile("rb")
                first = json.loads(await asyncio.to_thread(events.readline))
                assert first["ok"] is True
                assert first["snapshot"]["role"] == "STANDBY"
                run = await asyncio.to_thread(ask_socket, proxy.path, {"op": "run", "job": "ok"})
                run_id = run[0]["run_id"]
                seen: list[dict[str, Any]] = []
                while not any(
                    e.get("event") == "run_finished" and e["data"].get("id") == run_id
                    for e in seen
                ):
                    seen.append(json.loads(await asyncio.to_thread(events.readline)))
                assert any(e["event"] == "run_started" for e in seen)
        finally:
            await proxy.close()
        assert not proxy.path.exists()


async def test_a_standby_without_a_leader_says_so(tmp_path: Path) -> None:
    leaders: list[FakeLeader | None] = [None]

    async def find() -> FakeLeader | None:
        return leaders[0]

    proxy = await serve_proxy(tmp_path / "standby.sock", find, {"host": this_host(), "pid": 1})
    try:
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "status"}))[0]
        assert answer["ok"] is False and answer["error"].startswith("no leader")
        # a lapsed lease is no leader either
        leaders[0] = FakeLeader("x:1:a", this_host(), 1, "/nowhere.sock", 3, live=False)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "pause"}))[0]
        assert answer["ok"] is False and answer["error"].startswith("no leader")
        # a leader on another host: named, since its Unix socket is out of reach
        leaders[0] = FakeLeader("far:9:b", "far-away-host", 99, "/v/Logs/keeper-99.sock", 4)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "jobs"}))[0]
        assert answer["ok"] is False
        assert "pid 99 on far-away-host" in answer["error"]
        # a leader whose socket is gone (killed a moment ago)
        leaders[0] = FakeLeader("x:1:a", this_host(), 1, str(tmp_path / "gone.sock"), 5)
        answer = (await asyncio.to_thread(ask_socket, proxy.path, {"op": "jobs"}))[0]
        assert answer["ok"] is False and "does not answer" in answer["error"]
    finally:
        await proxy.close()


async def test_the_cli_reaches_the_leader_named_in_cluster_json_or_a_standby(
    tmp_path: Path,
) -> None:
    """Keepers in cluster mode hold no flock: `--status`, `jobs`, `run`, `pause` and
    `resume` find the leader through Logs/cluster.json, else a live standby's socket."""
    leader_vault = plain_vault(tmp_path, "leader")
    shared = plain_vault(tmp_path, "shared")  # the vault the CLI is pointed at
    async with leader_keeper(leader_vault) as leader_socket:
        write_cluster_file(
            shared, CLUSTER, 3, "h:1:a", this_host(), os.getpid(), str(leader_socket)
        )
        code, out, err = await cli("--status", "--json", "--vault", str(shared))
        assert code == 0, err
        assert json.loads(out)["keeper"]["pid"] == os.getpid()
        code, out, err = await cli("run", "ok", "--wait", "--vault", str(shared))
        assert code == 0, err
        code, out, err = await cli("pause", "slow", "--vault", str(shared))
        assert (code, err) == (0, ""), err
        code, out, err = await cli("jobs", "--json", "--vault", str(shared))
        assert code == 0, err
        assert {j["name"]: j["paused"] for j in json.loads(out)} == {"ok": False, "slow": True}
        code, out, err = await cli("resume", "slow", "--vault", str(shared))
        assert code == 0, err

        # The leader named is dead (a failover): a live standby on this host forwards.
        leader = FakeLeader("h:1:a", this_host(), os.getpid(), str(leader_socket), 4)

        async def find() -> FakeLeader:
            return leader

        write_cluster_file(shared, CLUSTER, 3, "h:0:z", this_host(), dead_pid(), "/gone.sock")
        proxy = await serve_proxy(keeper_socket(shared), find)
        try:
            code, out, err = await cli("--status", "--json", "--vault", str(shared))
            assert code == 0, err
            keeper = json.loads(out)["keeper"]
            assert (keeper["pid"], keeper["role"], keeper["epoch"]) == (os.getpid(), "STANDBY", 4)
            assert keeper["leader"]["socket"] == str(leader_socket)
            code, out, err = await cli("run", "ok", "--wait", "--vault", str(shared))
            assert code == 0, err
        finally:
            await proxy.close()

    # Nothing runs here and the leader is on another host: said, not a local run.
    write_cluster_file(shared, CLUSTER, 5, "far:7:b", "far-away-host", 7, "/v/keeper-7.sock")
    code, out, err = await cli("--status", "--vault", str(shared))
    assert "the cluster's leader is pid 7 on far-away-host" in out + err, (code, out, err)
    code, out, err = await cli("pause", "slow", "--vault", str(shared))
    assert "keeper pid 7 runs on far-away-host" in out, (code, out, err)


def test_with_no_cluster_keeper_here_run_and_the_console_refuse_instead_of_running_alone(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A run or console keeper outside the leader would escape the lease (and the
    cluster's history): in cluster mode they reach a keeper of the cluster or say why."""
    vault = cluster_vault(tmp_path, pg_dsn)

    result = run_cli("run", "tick", "--vault", str(vault))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "cannot run tick: no keeper of cluster ops runs on this host" in result.stderr
    assert not list((vault / "Logs").glob("history/*.jsonl"))
    with pytest.raises(ControlUnavailable, match="no keeper of cluster ops runs on this host"):
        connect(load_config(vault / "watchkeeper.toml"))
    assert not (vault / "Logs" / ".watchkeeper.lock").exists() or holder(vault) is None
