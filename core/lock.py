"""One keeper per vault: flock on Logs/.watchkeeper.lock holding {pid, started_at, hostname}."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchkeeper.core import logsdir
from watchkeeper.core.logsdir import LogsAccessError

LOCK_NAME = ".watchkeeper.lock"
PROBE_PATIENCE = 0.2


class LockHeld(Exception):
    """Another live keeper holds the vault; `holder` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        pid = holder.get("pid", "?")
        host = holder.get("hostname", "?")
        super().__init__(f"another keeper holds {path.parent.parent}: pid {pid} on {host}")


@dataclass
class VaultLock:
    """The vault's lock, held through `fd` until released."""

    path: Path
    fd: int
    previous: dict[str, Any]
    """What the lock file said before we took it: the last keeper, possibly a dead one."""

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = -1

    def note(self, **fields: str) -> None:
        """Add fields to this keeper's lock record (the control socket's path)."""
        record = {**_read(self.fd), **fields}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(record).encode(), 0)


def lock_path(vault: Path) -> Path:
    return vault / "Logs" / LOCK_NAME


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def acquire(vault: Path) -> VaultLock:
    """Take the vault's lock or raise LockHeld. A dead holder's flock is gone with it.
    LogsAccessError when this user may not create or write the lock file."""
    path = lock_path(vault)
    try:
        fd = logsdir.open_file(path, os.O_RDWR)
    except OSError as error:
        raise LogsAccessError("take the lock", path, error) from None
    try:
        return _take(path, fd)
    except OSError as error:
        os.close(fd)
        raise LogsAccessError("take the lock", path, error) from None


def _take(path: Path, fd: int) -> VaultLock:
    # holder() probes by taking the lock for a few microseconds: a start that meets a
    # probe tries again for a moment before it believes another keeper is there.
    deadline = time.monotonic() + PROBE_PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            holder = _read(fd)
            os.close(fd)
            raise LockHeld(path, holder) from None
    previous = _read(fd)
    import socket  # only here and to reload: readers of the lock start without it

    record = {
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return VaultLock(path, fd, previous)


def holder(vault: Path) -> dict[str, Any] | None:
    """The live keeper's lock record, or None when no keeper holds the vault.

    Read-only: a user who may read Logs/ but not write it (a group let in by log_mode)
    can still ask. LogsAccessError when this user may not read the lock file.
    """
    path = lock_path(vault)
    try:
        # flock works on a descriptor opened for reading alone.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _cluster_keeper(vault)
    except OSError as error:
        raise LogsAccessError("read the lock", path, error) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return _cluster_keeper(vault)


def _cluster_keeper(vault: Path) -> dict[str, Any] | None:
    """In cluster mode the keepers sharing a vault hold no flock (the lease decides who
    leads): the one to ask is found through Logs/cluster.json, read only when it exists."""
    if not os.path.exists(vault / "Logs" / "cluster.json"):
        return None
    from watchkeeper.core.cluster.discovery import cluster_holder

    return cluster_holder(vault)


def _catches_sighup(pid: int) -> bool:
    """SIGHUP's default action ends a process: only signal a keeper that handles it.
    Without /proc (not Linux) there is no way to tell, so trust that it does."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return True


def ask_keeper_to_reload(vault: Path) -> str:
    """Have a running keeper re-read its config, state and ledger (SIGHUP); the
    answer says what happened."""
    record = holder(vault)
    if record is None:
        return "no keeper running; applies when one starts"
    pid, host = record.get("pid"), record.get("hostname", "?")
    if not isinstance(pid, int) or pid <= 0:
        return "a keeper holds the vault but names no pid; applies when it restarts"
    import socket

    if host != socket.gethostname():
        return f"keeper pid {pid} runs on {host}: tell it there with `kill -HUP {pid}`"
    if not _catches_sighup(pid):
        return f"keeper pid {pid} does not reload on SIGHUP; applies when it restarts"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return f"keeper pid {pid} is gone; applies when one starts"
    except PermissionError:
        return f"keeper pid {pid} belongs to another user: not told"
    return f"keeper pid {pid} told"
