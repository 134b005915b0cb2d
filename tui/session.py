"""The console's hold on a keeper: connect (own the vault or attach to its keeper), start,
take over when an attached keeper went away, and close.

Every method here blocks (files, locks, the keeper's start and stop): the app calls them
from thread workers, never on its own thread.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchkeeper.core.client import InProcessClient, KeeperClient, SocketClient
from watchkeeper.core.config import Config, ConfigError, load_config
from watchkeeper.core.control_protocol import ControlUnavailable
from watchkeeper.core.events import Event
from watchkeeper.core.lock import LockHeld, acquire, holder

START_WAIT = 60.0
TAKEOVER_WAIT = 10.0
ATTACH_WAIT = 3.0
M_ARENA_MAX = -8  # glibc's mallopt parameter


def connect(config: Config) -> KeeperClient:
    """Owner when the vault's lock is free, else attached to the keeper holding it.
    ControlUnavailable when that keeper cannot be reached."""
    if config.cluster is not None:
        # The lease, not the vault's lock, decides who leads: the console never runs a
        # keeper of its own there, it attaches to the cluster's (core/cluster/discovery.py).
        if holder(config.vault) is None:
            raise ControlUnavailable(
                f"no keeper of cluster {config.cluster.name} runs on this host: start one "
                "with `watchkeeper --daemon`"
            )
        return SocketClient(config.vault)
    deadline = time.monotonic() + ATTACH_WAIT
    while True:
        try:
            return InProcessClient(config, acquire(config.vault))
        except LockHeld:
            pass
        try:
            return SocketClient(config.vault)
        except ControlUnavailable:
            if holder(config.vault) is None:
                continue  # it stopped meanwhile: the lock is ours to take
            # A keeper that has just started takes a moment to open its socket.
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


class KeeperSession:
    def __init__(self, client: KeeperClient) -> None:
        self.client = client
        self.started = False
        """The keeper runs (or we are attached) and answers."""
        self.closed = False
        """The keeper stopped (owner) or we let go of it (attached), and the lock is free."""
        self._starting = False
        self._start_done = threading.Event()
        self._closing = False
        self._close_done = threading.Event()
        self._lock = threading.Lock()

    def begin(self) -> None:
        """Called on the app's thread before start() is handed to a worker: a close that
        comes in between waits for that start."""
        self._starting = True
        self._start_done.clear()

    def start(self, on_event: Callable[[Event], None]) -> dict[str, Any]:
        """Start the keeper (or the event stream) and take a first snapshot."""
        try:
            self.client.start(on_event)
            snapshot = self.client.snapshot()
        finally:
            self._start_done.set()
        self.started = True
        return snapshot

    def close(self, end_runs: bool) -> None:
        """Stop the keeper (owner) or let go of it (attached), and wait until that is
        done. A second close waits for the first; with `end_runs` it hurries it."""
        # A quit while the keeper is still starting waits for the start: closing half a
        # start would free the lock under a keeper that goes on.
        if self._starting:
            self._start_done.wait(START_WAIT)
        with self._lock:
            first, self._closing = not self._closing, True
        if not first:
            if end_runs and self.client.mode == "owner":
                self.client.close(end_runs=True)
            self._close_done.wait()
            return
        try:
            self.client.close(end_runs=end_runs)
        finally:
            self.closed = True
            self._close_done.set()

    def take_over(self, config_path: Path, stop: Callable[[], bool]) -> KeeperClient | str:
        """Own the vault once the lock is free; if another keeper got there first (say
        systemd restarted it), attach to that one instead. A string: why neither. In
        cluster mode, never own: attach to the new leader or a standby (a keeper run
        here would fire outside the lease, unfenced)."""
        deadline = time.monotonic() + TAKEOVER_WAIT
        vault = self.client.vault
        why = "the lock stayed taken"
        while time.monotonic() < deadline and not stop():
            try:
                config = load_config(config_path)
                if config.cluster is not None:
                    return connect(config)
                return InProcessClient(config, acquire(vault))
            except ConfigError as error:
                return f"{len(error.issues)} error(s) in {config_path}"
            except ControlUnavailable as error:
                why = str(error)
                time.sleep(0.1)  # a standby takes over the lease within lease + 5 s
            except LockHeld:
                try:
                    return SocketClient(vault)
                except ControlUnavailable:
                    time.sleep(0.1)  # the old keeper is still letting go of its lock
        return why

    def adopt(self, client: KeeperClient) -> None:
        self.client = client
        self.closed = self._closing = self.started = False
        self._close_done.clear()
        self.begin()


def one_malloc_arena() -> None:
    """glibc gives each allocating thread its own malloc arena and seldom returns their
    freed memory: with the keeper's threads in this process RSS crept ~1.5 MB a minute at
    50 runs/s while Python's heap stayed flat. Python threads allocate under the GIL, so
    one arena costs no contention. Not glibc (macOS): nothing to do."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)
