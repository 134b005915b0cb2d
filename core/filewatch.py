"""Files arriving in the vault: which globs they match, and when they are whole.

A file is whole when it arrived by rename (the rename stamps its ctime after its last
write, so its mtime predates its arrival) or when its size and mtime held still for
the job's `settle` time. Only whole files are handed to jobs.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from core.vault import FOLDERS, inside_vault

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
        path = vault / rel
        if path.is_symlink() and not inside_vault(vault, path):
            return  # symlinks that leave the vault are never followed
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
# over in ~17 ms but costs ~0.35% of a core while idle; 250 ms costs next to nothing.
# So the short step is only used when some job waits for files.
FAST_STEP_MS = 10
IDLE_STEP_MS = 250


async def watch(
    paths: list[Path], stop: asyncio.Event, debounce_ms: int = 200, step_ms: int = FAST_STEP_MS
) -> AsyncIterator[set[tuple[int, str]]]:
    """watchfiles' batches, tuned: its defaults can hold events back 1.6 s under a
    steady stream; a short step hands a quiet file over within tens of milliseconds."""
    from watchfiles import awatch

    async for changes in awatch(
        *paths,
        stop_event=stop,
        debounce=debounce_ms,
        step=step_ms,
        recursive=True,
        ignore_permission_denied=True,
    ):
        yield {(int(change), path) for change, path in changes}
