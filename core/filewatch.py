"""Files arriving in the vault: which globs they match, and when they are whole.

A file is whole when it arrived by rename (the rename stamps its ctime after its last
write, so its mtime predates its arrival) or when its size and mtime held still for
the job's `settle` time. Only whole files are handed to jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from watchkeeper.core.vault import FOLDERS, inside_vault, leaves_vault

# Names that are scratch, not work: hidden files, editor and download temp files, and
# the quarantine notes the keeper writes itself.
_SCRATCH_SUFFIXES = ("~", ".tmp", ".part", ".swp", ".crdownload", ".why.md")


def is_work_file(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(_SCRATCH_SUFFIXES)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A vault-relative glob as a full-path regex: `*` and `?` stay within one folder,
    `**/` spans any number of folders, `[...]` is a character class."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = pattern.find("]", index + 1)
            if close < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                index = close
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out), re.DOTALL)


def glob_root(pattern: str) -> str:
    """The folder a glob lives under: the part before its first wildcard."""
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if any(char in part for char in "*?["):
            break
        fixed.append(part)
    return "/".join(fixed)


def relative(vault: Path, path: Path) -> str | None:
    try:
        return path.relative_to(vault).as_posix()
    except ValueError:
        return None


def scan(vault: Path, patterns: Iterable[str]) -> list[str]:
    """Vault-relative work files matching any pattern, for the hand-over at start."""
    regexes = [compile_glob(pattern) for pattern in patterns]
    found: set[str] = set()
    for root in {glob_root(pattern) for pattern in patterns}:
        base = vault / root
        if not inside_vault(vault, base):
            continue
        for folder, dirs, files in os.walk(base):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in files:
                rel = relative(vault, Path(folder) / name)
                if rel and is_work_file(name) and any(regex.fullmatch(rel) for regex in regexes):
                    found.add(rel)
    return sorted(found)


def whole_now(path: Path, settle: float) -> bool | float:
    """True when whole; False when gone or not a regular file; else the wall time at
    which it will have held still for `settle`, if nobody writes to it meanwhile."""
    try:
        info = path.stat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_ctime_ns > info.st_mtime_ns:
        return True  # arrived by rename: complete before it got here
    settled_at = info.st_mtime_ns / 1e9 + settle
    return True if time.time() >= settled_at else settled_at


class Settler:
    """Waits out files that are still being written, then reports them whole."""

    def __init__(self, on_whole: Callable[[str], None]) -> None:
        self.on_whole = on_whole
        self._waiting: dict[str, asyncio.TimerHandle] = {}

    def offer(self, vault: Path, rel: str, settle: float) -> None:
        """Check now, and again at each moment the file could have settled."""
        handle = self._waiting.pop(rel, None)
        if handle is not None:
            handle.cancel()
        if leaves_vault(vault, rel):
            return  # symlinks that leave the vault are never followed, nor are linked folders
        path = vault / rel
        state = whole_now(path, settle)
        if state is True:
            self.on_whole(rel)
        elif state is not False:
            delay = max(0.005, state - time.time())
            self._waiting[rel] = asyncio.get_running_loop().call_later(
                delay, self.offer, vault, rel, settle
            )

    @property
    def busy(self) -> bool:
        return bool(self._waiting)

    def cancel(self) -> None:
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()


def watch_paths(vault: Path, patterns: Iterable[str]) -> list[Path]:
    """The standard folders plus every glob's root, none nested in another."""
    paths = {vault / folder for folder in FOLDERS}
    for pattern in patterns:
        root = vault / glob_root(pattern)
        if root != vault and inside_vault(vault, root):
            paths.add(root)
    existing = sorted(path for path in paths if path.is_dir())
    return [path for path in existing if not any(other in path.parents for other in existing)]


# watchfiles checks for changes (and its stop event) every `step`: 10 ms hands a file
# over in ~17 ms; each step wakes a thread that takes the GIL. It is used only while some
# job waits for files (otherwise core/dirwatch.py's inotify reader, without a thread).
# Its other timer, `rust_timeout`, is off (0): by default it returns to the event loop
# every 5 s with nothing to say; the stop event still ends the wait within one step.
FAST_STEP_MS = 10


# After watchfiles failed on a batch, it is started again at most this often: each start
# walks the watched folders, and a file with an undecodable name written to nonstop would
# otherwise make that walk continuous.
RESTART_INTERVAL = 1.0
ADDED = 1  # watchfiles.Change.added


async def watch(
    paths: list[Path], stop: asyncio.Event, debounce_ms: int = 200, step_ms: int = FAST_STEP_MS
) -> AsyncIterator[set[tuple[int, str]]]:
    """watchfiles' batches, tuned: its defaults can hold events back 1.6 s under a
    steady stream; a short step hands a quiet file over within tens of milliseconds.

    watchfiles fails a whole batch when a path in it is not valid UTF-8 ("Unable to
    decode path"), and its watch ends. It is then started again, and once it watches,
    every file under `paths` is reported as added: the failed batch's events are gone,
    and this way none of them is lost (a file already handed over is known by its hash).
    """
    from watchfiles import Change, awatch
    from watchfiles._rust_notify import WatchfilesRustInternalError

    restarted_at: float | None = None
    while not stop.is_set():
        batches = awatch(
            *paths,
            stop_event=stop,
            debounce=debounce_ms,
            step=step_ms,
            rust_timeout=0,
            recursive=True,
            ignore_permission_denied=True,
        )
        first: asyncio.Future[set[tuple[Change, str]] | None] | None = None
        try:
            if restarted_at is not None:
                # The first step of awatch sets its watches up before it waits: from the
                # walk on, no event is missed.
                first = asyncio.ensure_future(anext(batches, None))
                await asyncio.sleep(0)
                yield await asyncio.to_thread(_every_file, paths)
                changes = await first
                if changes is None:
                    return
                yield {(int(change), path) for change, path in changes}
            async for changes in batches:
                yield {(int(change), path) for change, path in changes}
            return
        except* WatchfilesRustInternalError as failed:
            if not all("decode path" in str(error) for error in failed.exceptions):
                raise  # not a name it could not read: the caller says so
        finally:
            if first is not None and not first.done():
                first.cancel()
                await asyncio.wait([first])
            await batches.aclose()
        now = time.monotonic()
        if restarted_at is not None and now < restarted_at + RESTART_INTERVAL:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), restarted_at + RESTART_INTERVAL - now)
        restarted_at = time.monotonic()


def _every_file(paths: list[Path]) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for path in paths:
        for folder, _, files in os.walk(path):
            found.update((ADDED, os.path.join(folder, name)) for name in files)
    return found
