"""One keeper per vault: flock on Logs/.watchkeeper.lock holding {pid, started_at, hostname}."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = ".watchkeeper.lock"


class LockHeld(Exception):
    """Another live keeper holds the vault; `holder` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: dict) -> None:
        self.path = path
        self.holder = holder
        pid = holder.get("pid", "?")
        host = holder.get("hostname", "?")
        super().__init__(f"another keeper holds {path.parent.parent}: pid {pid} on {host}")


@dataclass
class VaultLock:
    path: Path
    fd: int
    previous: dict
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


def lock_path(vault: Path) -> Path:
    return vault / "Logs" / LOCK_NAME


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def acquire(vault: Path) -> VaultLock:
    """Take the vault's lock or raise LockHeld. A dead holder's flock is gone with it."""
    path = lock_path(vault)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        raise LockHeld(path, holder) from None
    previous = _read(fd)
    record = {
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return VaultLock(path, fd, previous)


def holder(vault: Path) -> dict | None:
    """The live keeper's lock record, or None when no keeper holds the vault."""
    path = lock_path(vault)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
