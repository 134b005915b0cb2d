"""The keeper's two long watches: the vault's folders (files for `on_files` jobs) and
its config file (live reload).

Each watch runs under a supervisor with a stop event of its own: watchfiles sets the
event it was given when its task is cancelled, so a shared one would stop every watch
with one. A watch that fails or ends by itself is logged and started again (after a
backoff that grows while it keeps failing); replacing one (new globs after a reload)
stops it through its own event. Nothing that happens to one watch reaches another,
and nothing in a watch's work (a reload, a file handed over) can end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from watchkeeper.core import tuning
from watchkeeper.core.config import Config
from watchkeeper.core.dirwatch import folder_changes
from watchkeeper.core.events import EventBus
from watchkeeper.core.faults import described
from watchkeeper.core.filewatch import (
    glob_root,
    relative,
    scan,
    watch,
    watch_paths,
)
from watchkeeper.core.handover import Handover
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.names import shown
from watchkeeper.core.slices import Slices
from watchkeeper.core.units import format_duration
from watchkeeper.core.vault import FOLDERS, summarize_all


class _Changes(Protocol):
    def changed(self) -> None: ...


class Watched(Protocol):
    """What the watches need of the keeper they feed."""

    @property
    def vault(self) -> Path: ...
    @property
    def config(self) -> Config: ...
    @property
    def log(self) -> KeeperLog: ...
    @property
    def handover(self) -> Handover: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def outputs(self) -> _Changes: ...
    def reload(self, reason: str) -> bool: ...


RESTART_FIRST = 0.5
RESTART_MAX = 30.0
# A watch that ran this long before it failed starts again after RESTART_FIRST.
HEALTHY = 60.0
# How long close() waits for a watch to notice its stop event (watchfiles looks at it
# every step) before it cancels the task.
CLOSE_WAIT = 2.0
# File times come from a coarser clock than time.time(): a file made just after a moment
# may be stamped up to a tick before it.
CLOCK_MARGIN = 1.0
WATCH_ADDED = 1  # watchfiles.Change
WATCH_DELETED = 3

Body = Callable[[asyncio.Event], Awaitable[None]]


class Supervised:
    """One watch, kept running until close()."""

    def __init__(self, name: str, body: Body, log_error: Callable[[str], None]) -> None:
        self.name = name
        self._body = body
        self._log_error = log_error
        self._stop = asyncio.Event()  # the running body's own
        self._closing = False
        self._wakeup = asyncio.Event()  # ends a backoff early
        self._task = asyncio.create_task(self._supervise(), name=name)

    def renew(self) -> None:
        """Stop the running body through its own event and start a fresh one."""
        self._renewing = True
        self._stop.set()
        self._wakeup.set()

    def stop(self) -> None:
        self._closing = True
        self._stop.set()
        self._wakeup.set()

    async def close(self) -> None:
        self.stop()
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _supervise(self) -> None:
        delay = RESTART_FIRST
        while not self._closing:
            self._stop = asyncio.Event()
            self._wakeup.clear()
            began = time.monotonic()
            try:
                await self._body(self._stop)
                problem = None if self._stop.is_set() else "ended by itself"
            except Exception as error:
                problem = f"failed: {described(error)}"
            if self._closing:
                return
            if problem is None:  # renewed
                continue
            if time.monotonic() - began >= HEALTHY:
                delay = RESTART_FIRST
            self._log_error(f"{self.name} {problem}; starting it again in {format_duration(delay)}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            delay = min(2 * delay, RESTART_MAX)


class Watches:
    """The vault watch and the config watch of one keeper, from serve() to stop()."""

    def __init__(self, keeper: Watched) -> None:
        self.keeper = keeper
        # Folders the vault watch wants but that did not exist when it started: when one
        # appears, the watch starts again to take it in.
        self._missing: set[Path] = set()
        self._started_once = False
        self._vault_due: asyncio.TimerHandle | None = None
        self.vault = Supervised("vault watch", self._watch_vault, keeper.log.error)
        self.config = Supervised("config watch", self._watch_config, keeper.log.error)

    def renew_vault(self) -> None:
        self.vault.renew()

    def stop(self) -> None:
        self.vault.stop()
        self.config.stop()

    async def close(self) -> None:
        await asyncio.gather(self.vault.close(), self.config.close())
        if self._vault_due is not None:
            self._vault_due.cancel()

    def vault_changed(self) -> None:
        """The vault's folder counts go out at most every VAULT_EVENT_INTERVAL."""
        if self._vault_due is None:
            loop = asyncio.get_running_loop()
            self._vault_due = loop.call_later(tuning.VAULT_EVENT_INTERVAL, self._publish_vault)

    def _publish_vault(self) -> None:
        self._vault_due = None
        keeper = self.keeper
        try:
            folders = summarize_all(keeper.vault)
        except OSError as error:
            keeper.log.error(f"cannot count the vault's files: {described(error)}")
            return
        keeper.bus.publish(
            "vault_changed",
            folders={f.name: {"count": f.count, "newest": list(f.newest)} for f in folders},
        )
        keeper.outputs.changed()

    def _roots(self, patterns: list[str]) -> tuple[list[Path], set[Path]]:
        """The folders to watch, and those wanted but missing."""
        vault = self.keeper.vault
        wanted = {vault / folder for folder in FOLDERS}
        wanted |= {vault / glob_root(pattern) for pattern in patterns} - {vault}
        return watch_paths(vault, patterns), {path for path in wanted if not path.is_dir()}

    async def _watch_vault(self, stop: asyncio.Event) -> None:
        keeper = self.keeper
        handover = keeper.handover
        patterns = handover.patterns
        paths, self._missing = self._roots(patterns)
        # Files that came while no watch ran (or into a folder just taken in) are looked
        # for once the new watch is in place (watchfiles sets it up before its first
        # wait), so that none falls between the two. The first watch needs only those
        # that came since the keeper looked at the vault as it started.
        loop = asyncio.get_running_loop()
        if self._started_once:
            loop.call_soon(self._offer_each, handover.rescan)
        else:
            loop.call_soon(self._offer_recent, keeper.started_at.timestamp() - CLOCK_MARGIN)
        self._started_once = True
        # With no job waiting for files, only the folders' own entries matter (their
        # counts): inotify on the loop needs no thread waking every step.
        changes_of = watch(paths, stop) if patterns else folder_changes(paths, stop)
        async for changes in changes_of:
            # A drop of ten thousand files takes a second to hash: slots due meanwhile
            # go in between, and the files are not held back more than that.
            slices = Slices(pause=0.0)
            for change, path in changes:
                await slices.give_way()
                if change == WATCH_ADDED and Path(path) in self._missing:
                    self.renew_vault()
                elif change == WATCH_DELETED and Path(path) in paths:
                    # Its watch went with it: the others go on, and it is watched again
                    # once it is back.
                    name = shown(relative(keeper.vault, Path(path)) or path)
                    keeper.log.warning(f"{name} went away; watched again once it is back")
                    self.renew_vault()
                rel = relative(keeper.vault, Path(path))
                if rel is None:
                    continue
                if change == WATCH_DELETED:
                    self._offer_each(handover.gone, rel)
                else:
                    self._offer_each(handover.offer, rel)
            self.vault_changed()

    def _offer_recent(self, since: float) -> None:
        vault = self.keeper.vault
        for rel in scan(vault, self.keeper.handover.patterns):
            try:
                info = (vault / rel).stat()
            except OSError:
                continue
            if max(info.st_ctime, info.st_mtime) >= since:
                self._offer_each(self.keeper.handover.offer, rel)

    def _offer_each(self, hand: Callable[..., None], *args: str) -> None:
        """One file that cannot be handed over must not keep the others back."""
        try:
            hand(*args)
        except Exception as error:
            what = shown(args[0]) if args else "the files already there"
            self.keeper.log.error(f"cannot hand over {what}: {described(error)}")

    async def _watch_config(self, stop: asyncio.Event) -> None:
        keeper = self.keeper
        async for changes in folder_changes([keeper.vault], stop):
            appeared = {Path(path) for change, path in changes if change == WATCH_ADDED}
            if appeared & self._missing:
                self.renew_vault()
            if any(path == str(keeper.config.path) for _, path in changes):
                try:
                    keeper.reload("the config file changed")
                except Exception as error:  # the running config stays; so does this watch
                    keeper.log.error(f"config reload failed: {described(error)}")
