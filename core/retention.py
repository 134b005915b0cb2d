"""`log_retention_days`: rotated job and keeper logs (NAME.log.1, .2 ...) last written
longer ago than that are removed, at start and then daily. The live logs are never
touched: size rotation (`log_max_size`, `log_backups`) keeps those in bounds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from watchkeeper.core.faults import described
from watchkeeper.core.logs import KeeperLog

DAY = 86400.0
_ROTATED = re.compile(r".+\.log\.[0-9]+")


def remove_old_logs(logs: Path, days: int, now: float) -> tuple[list[Path], list[str]]:
    """The rotated logs in `logs` and `logs/jobs` older than `days`, removed; and the
    problems met (a file that could not be removed is tried again the next day)."""
    cutoff = now - days * DAY
    removed: list[Path] = []
    problems: list[str] = []
    for folder in (logs, logs / "jobs"):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError as error:
            problems.append(f"cannot list {folder}: {error.strerror}")
            continue
        for entry in entries:
            if not _ROTATED.fullmatch(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as error:
                problems.append(f"cannot remove {entry.path}: {error.strerror}")
                continue
            removed.append(Path(entry.path))
    return removed, problems


class LogRetention:
    """The daily sweep, on a worker thread so that a Logs/jobs of thousands of files never
    holds up the keeper's loop. `days` is read at each sweep: a reload changes it."""

    def __init__(self, logs: Path, days: Callable[[], int | None], log: KeeperLog) -> None:
        self.logs = logs
        self.days = days
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweeps())

    async def sweep(self) -> list[Path]:
        days = self.days()
        if days is None:
            return []
        try:
            removed, problems = await asyncio.to_thread(
                remove_old_logs, self.logs, days, time.time()
            )
        except Exception as error:  # logged; the next day tries again
            self.log.error(f"log retention: {described(error)}")
            return []
        if removed:
            names = ", ".join(path.name for path in removed[:5])
            more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
            self.log.info(
                f"log retention ({days}d) removed {len(removed)} rotated log(s): {names}{more}"
            )
        for problem in problems[:5]:
            self.log.warning(f"log retention: {problem}")
        return removed

    async def _sweeps(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(DAY)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
