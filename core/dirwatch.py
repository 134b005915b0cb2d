"""Folders' own entries as they change (not what is below them), through inotify read
on the event loop: no thread, and no wakeup while nothing changes.

The config watch uses it, and the vault watch while no job waits for files (the vault's
folder counts are of their own entries). watchfiles wakes a thread of its own every step
to look at its stop event: that was all of an idle keeper's CPU, and a longer step would
make a keeper's stop wait longer for it. Here a stop is seen at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
WATCHED = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED  # the watched folder itself
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
ADDED, MODIFIED, DELETED = 1, 2, 3  # as watchfiles.Change numbers them

Changes = set[tuple[int, str]]


@functools.cache
def _inotify() -> tuple[Callable[[int], int], Callable[[int, bytes, int], int]]:
    libc = ctypes.CDLL(None, use_errno=True)
    init, add = libc.inotify_init1, libc.inotify_add_watch
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return init, add


def _open(folders: list[Path]) -> tuple[int, dict[int, Path]]:
    init, add = _inotify()
    fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"inotify: {os.strerror(number)}")
    watches = {}
    for folder in folders:
        wd = add(fd, os.fsencode(folder), WATCHED)
        if wd < 0:
            number = ctypes.get_errno()
            os.close(fd)
            raise OSError(number, os.strerror(number), str(folder))
        watches[wd] = folder
    return fd, watches


def _kind(mask: int) -> int:
    if mask & (IN_CREATE | IN_MOVED_TO):
        return ADDED
    if mask & (IN_DELETE | IN_MOVED_FROM):
        return DELETED
    return MODIFIED


def _read(fd: int, watches: dict[int, Path], changes: Changes) -> None:
    """Adds what the pending events say to `changes`. A watched folder that went is
    reported DELETED and dropped from `watches`."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return
    offset = 0
    while offset < len(data):
        wd, mask, _, length = EVENT.unpack_from(data, offset)
        offset += EVENT.size
        name = data[offset : offset + length].rstrip(b"\0")
        offset += length
        if mask & IN_Q_OVERFLOW:
            # Events were lost: every entry may be new or changed.
            for watched in watches.values():
                changes.update((ADDED, str(watched / entry)) for entry in os.listdir(watched))
        folder = watches.get(wd)
        if folder is None:
            continue
        if mask & GONE:
            changes.add((DELETED, str(folder)))
            if mask & IN_IGNORED:
                del watches[wd]
        elif name:
            changes.add((_kind(mask), str(folder / os.fsdecode(name))))


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


async def folder_changes(
    folders: list[Path], stop: asyncio.Event, quiet: float = 0.25, most: float = 0.5
) -> AsyncIterator[Changes]:
    """Batches of (ADDED/MODIFIED/DELETED, path) for the entries of `folders`, each once
    `quiet` seconds pass without another event, or `most` seconds after its first. A
    folder removed or moved away is reported DELETED itself. Ends when `stop` is set or
    once no folder is left (given none, it waits for `stop`)."""
    fd, watches = _open(folders)
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while not stop.is_set():
            await _either(ready, stop)
            changes: Changes = set()
            until = loop.time() + most
            while not stop.is_set():
                ready.clear()
                _read(fd, watches, changes)
                left = until - loop.time()
                if not watches or left <= 0:
                    break
                try:
                    async with asyncio.timeout(min(quiet, left)):
                        await ready.wait()
                except TimeoutError:
                    break
            if stop.is_set():
                return
            if changes:
                yield changes
            if not watches:
                return
    finally:
        loop.remove_reader(fd)
        os.close(fd)
