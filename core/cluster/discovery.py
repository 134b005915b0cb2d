"""Where the CLI and the console find the keeper to talk to in cluster mode.

Several keepers share one vault there and none holds its flock (the lease decides who
leads), so the lock record cannot say whose socket to use. The leader writes
Logs/cluster.json at each takeover (core/cluster/role.py: {cluster, epoch, leader:
{keeper_id, host, pid, socket}, updated}); a reader takes, in order:

1. the leader it names, when it runs on this host and its socket is there;
2. else any live keeper of the vault on this host (Logs/keeper-<pid>.sock): a standby,
   whose control socket forwards to the leader (core/cluster/proxy.py);
3. else, when the leader runs on another host, a record without a socket whose
   `unreachable` says so (a Unix socket is not reachable across hosts).

The database is the authority on who leads; the file is how a reader with no database
connection (the quick CLI, which must not import psycopg) finds a keeper at all. Whoever
it reaches checks against the database: the leader knows it leads, a standby's proxy
asks the database (leader_in_db) before forwarding. Nothing here imports psycopg.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_FILE = "cluster.json"
KEEPER_SOCKET = re.compile(r"keeper-(\d+)\.sock")
SUN_PATH_MAX = 107  # sun_path's 108 bytes with the terminating NUL


def cluster_file(vault: Path) -> Path:
    return vault / "Logs" / CLUSTER_FILE


def read_cluster_file(vault: Path) -> dict[str, Any] | None:
    """Logs/cluster.json, or None when it is absent or not what a leader writes."""
    try:
        data = json.loads(cluster_file(vault).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("leader"), dict):
        return None
    return data


def this_host() -> str:
    # os.uname, not the socket module: the quick CLI starts without it.
    return os.uname().nodename


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive all the same
    return True


def live_keeper_sockets(vault: Path) -> list[tuple[int, Path]]:
    """(pid, socket) of the keepers on this host whose process is alive, oldest pid
    first (a stale socket of a killed keeper stays behind until its path is reused).
    Where core.cluster.role.keeper_socket puts them: Logs/keeper-<pid>.sock, or for a
    vault too deep for a socket path, watchkeeper-<digest>-keeper-<pid>.sock in the
    user's runtime directory."""
    places = [(vault.resolve() / "Logs", "")]
    if len(os.fsencode(places[0][0] / "keeper-4194304.sock")) > SUN_PATH_MAX:
        import hashlib

        digest = hashlib.sha256(os.fsencode(vault.resolve())).hexdigest()[:16]
        places.append((_runtime_dir(), f"watchkeeper-{digest}-"))
    found = []
    for folder, prefix in places:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.startswith(prefix):
                continue
            match = KEEPER_SOCKET.fullmatch(name[len(prefix) :])
            if match and pid_alive(int(match.group(1))):
                found.append((int(match.group(1)), folder / name))
    return sorted(found)


def _runtime_dir() -> Path:
    """Where control_protocol._private_runtime_dir puts sockets too long for Logs/: read
    here without making it (and without importing control_protocol, which imports the
    lock that asks this module)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime)
    import tempfile

    private = Path(tempfile.gettempdir()) / f"watchkeeper-{os.getuid()}"
    try:
        status = private.lstat()
    except OSError:
        return private
    # A folder someone else made in the shared temp dir could hold a planted socket.
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or private.is_symlink():
        return private / "not-private"
    return private


def cluster_holder(vault: Path) -> dict[str, Any] | None:
    """What core.lock.holder answers in cluster mode: a record shaped like the lock's
    ({pid, hostname, socket}, plus cluster, epoch and role) of the keeper to ask; None
    when no keeper of the vault runs that could be asked."""
    info = read_cluster_file(vault)
    if info is None:
        return None
    here = this_host()
    leader: dict[str, Any] = info["leader"]
    common = {"cluster": info.get("cluster"), "epoch": info.get("epoch")}
    socket = leader.get("socket")
    if (
        leader.get("host") == here
        and pid_alive(leader.get("pid"))
        and isinstance(socket, str)
        and os.path.exists(socket)
    ):
        found = {"pid": leader["pid"], "hostname": here, "socket": socket, "role": "LEADER"}
        return {**found, **common}
    standbys = live_keeper_sockets(vault)
    if standbys:
        pid, path = standbys[0]
        return {"pid": pid, "hostname": here, "socket": str(path), "role": "STANDBY", **common}
    if leader.get("host") not in (None, here):
        host, leader_pid = leader.get("host"), leader.get("pid")
        return {
            "pid": leader_pid,
            "hostname": host,
            "role": "LEADER",
            **common,
            "unreachable": (
                f"the cluster's leader is pid {leader_pid} on {host}, and no keeper of this vault "
                f"runs on this host to forward to: run the command on {host}, or start a "
                "standby keeper here"
            ),
        }
    return None


@dataclass(frozen=True)
class Leader:
    """Who leads, as the proxy needs it (core.cluster.lease.LeaderInfo has the same)."""

    keeper_id: str
    host: str
    pid: int
    socket: str
    epoch: int
    live: bool = True


async def leader_in_db(conn: Any, cluster: str) -> Leader | None:
    """The keeper whose lease is live now by the database's clock, or None. `conn`: a
    psycopg AsyncConnection."""
    cursor = await conn.execute(
        "SELECT keeper_id, host, pid, socket, epoch FROM watchkeeper.leader"
        " WHERE cluster = %s AND expires_at > clock_timestamp()",
        (cluster,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    keeper_id, host, pid, socket, epoch = row
    return Leader(str(keeper_id), str(host), int(pid), str(socket), int(epoch))
