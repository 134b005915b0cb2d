"""Who may read Logs/: the keeper's user alone (folders 0700, files 0600) unless
`[keeper] log_mode` opens it to a group.

A file's mode follows the folder it is in (the folder's read and write bits, never
execute, always the owner's read and write), so the keeper, the CLI and the console
create files alike without each knowing the config. The keeper sets every folder to
`log_mode` at start; a folder made later is private until the next start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from pathlib import Path

from watchkeeper.core.atomic import write_atomic

PRIVATE = 0o700


class LogsAccessError(OSError):
    """This user may not read or write what a command needs under Logs/ (it belongs to
    another user, or the disk refuses): the CLI says so and exits 2, never a traceback.

    An OSError still, with the cause's errno and strerror, so whoever handled the
    cause's OSError before handles this the same way.
    """

    def __init__(self, doing: str, path: Path, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.message = f"cannot {doing} {path}: {error.strerror or error}"
        if error.errno in (errno.EACCES, errno.EPERM):
            self.message += _whose(path)

    def __str__(self) -> str:
        return self.message


def _whose(path: Path) -> str:
    """Whose Logs/ `path` is in, and what this user may do about it; "" when it is ours
    (then it is not a matter of owners but of the disk, or a read-only mount)."""
    logs = next((folder for folder in (path, *path.parents) if folder.name == "Logs"), None)
    if logs is None:
        return ""
    try:
        uid = logs.stat().st_uid
    except OSError:
        return ""
    if uid == os.geteuid():
        return ""
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = f"uid {uid}"
    if os.access(logs, os.R_OK | os.X_OK):
        return f" (Logs/ belongs to {owner}; this user may read it, not write it: run as {owner})"
    return (
        f" (Logs/ is private to {owner}: run as that user, or let a group in"
        " with [keeper] log_mode)"
    )


def file_mode(folder_mode: int) -> int:
    """The mode of a file in a folder of `folder_mode`."""
    return (folder_mode & 0o660) | 0o600


def make_folder(path: Path) -> None:
    """`mkdir -p`, each new folder private to this user whatever the umask."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE)
        except FileExistsError:
            continue  # made meanwhile by another process, with its own mode
        os.chmod(folder, PRIVATE)


def mode_for(path: Path) -> int:
    """The mode a file at `path` gets from its folder (made, private, when missing)."""
    try:
        folder_mode = os.stat(path.parent).st_mode
    except FileNotFoundError:
        make_folder(path.parent)
        return file_mode(PRIVATE)
    return file_mode(stat.S_IMODE(folder_mode))


def open_file(path: Path, flags: int) -> int:
    """os.open with O_CREAT, the file (new or not) at the mode its folder gives."""
    mode = mode_for(path)
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        # Only regular files of ours: the umask may have taken bits off a new file, but a
        # device or someone else's file is not ours to change.
        if (
            stat.S_ISREG(info.st_mode)
            and stat.S_IMODE(info.st_mode) != mode
            and info.st_uid == os.geteuid()
        ):
            os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_file(path: Path, text: str) -> None:
    """write_atomic for a file under Logs/, at the mode its folder gives."""
    write_atomic(path, text, mode_for(path))


def secure(logs: Path, log_mode: int) -> int:
    """Set Logs/ and every folder in it to `log_mode` and every file to what that gives;
    returns how many changed. Symlinks, sockets and what belongs to others are left be."""
    if not logs.is_dir():
        make_folder(logs)
    wanted = {True: log_mode, False: file_mode(log_mode)}
    changed = 0
    for folder, _, files in os.walk(logs):
        for path, is_folder in [(folder, True), *((os.path.join(folder, f), False) for f in files)]:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            kind_ok = stat.S_ISDIR(info.st_mode) if is_folder else stat.S_ISREG(info.st_mode)
            mode = wanted[is_folder]
            if kind_ok and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != mode:
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(path, mode)
                    changed += 1
    return changed
