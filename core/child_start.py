"""Starting a child with the fewest steps between the keeper and its exec.

Popen spends about 60 µs of Python per child before and after the C call that forks and
execs (building its arguments, encoding the environment one variable at a time, its
bookkeeping); at a thousand runs a second that is 6% of a core, more than everything
else a run costs the loop's system calls. So where this Python's `_posixsubprocess.
fork_exec` has the call layout we know (3.11.3 to 3.13: 23 positional arguments, checked
once), the keeper calls it directly, with the environment encoded in one piece, and
reads the child's exec error the way Popen does. Anywhere else it is Popen, unchanged.
`tests/test_child_start.py` asserts that this Python takes the direct way, so a Python
that changes the call falls back visibly rather than silently.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

try:
    import _posixsubprocess
except ImportError:  # not a POSIX Python: Popen does it all
    _posixsubprocess = None  # type: ignore[assignment]

_ARITY = 23
_ENCODING, _ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


@functools.cache
def direct() -> bool:
    """Whether fork_exec here takes the 23 arguments this module passes, in its order."""
    if _posixsubprocess is None or not (3, 11) <= sys.version_info[:2] <= (3, 13):
        return False
    try:
        _posixsubprocess.fork_exec()  # type: ignore[call-arg]
    except TypeError as error:  # "takes exactly 23 arguments" / "expected 23 arguments"
        return re.search(rf"\b{_ARITY}\b", str(error)) is not None
    return False


class Child:
    """A started child; its exit is waited for with reap()."""

    __slots__ = ("_process", "pid")

    def __init__(self, pid: int, process: subprocess.Popen[bytes] | None) -> None:
        self.pid = pid
        self._process = process

    def reap(self) -> None:
        if self._process is not None:  # Popen keeps its own account of the child
            self._process.wait()
            return
        try:  # noqa: SIM105 (contextlib.suppress: three Python calls more, at every run's end)
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def start_child(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    stdin: int,
    output: int,
    preexec: Callable[[], None] | None = None,
) -> Child:
    """argv in a new process group of its own, in cwd, stdin from `stdin`, stdout and
    stderr into `output`, every other descriptor closed. Raises what Popen raises."""
    if not direct():
        process = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=output,
            stderr=output,
            cwd=cwd,
            env=env,
            process_group=0,
            close_fds=True,
            preexec_fn=preexec,
        )
        return Child(process.pid, process)
    sys.audit("subprocess.Popen", argv[0], argv, cwd, env)
    env_list = encoded_env(env)
    executables = _executables(argv[0], env.get("PATH"))
    error_read, error_write = _error_pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            argv, executables, True, (error_write,), str(cwd), env_list,
            stdin, -1, -1, output, -1, output, error_read, error_write,
            True, False, 0, None, None, None, -1, preexec, True,  # type: ignore[arg-type]
        )  # fmt: skip
    finally:
        os.close(error_write)
    try:
        report = _read_all(error_read)
    finally:
        os.close(error_read)
    if report:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise _child_error(report, argv[0], cwd)
    return Child(pid, None)


def encoded_env(env: Mapping[str, str]) -> list[bytes]:
    """`KEY=value` lines as exec takes them: encoded in one piece, not one call a variable."""
    if not env:
        return []
    if "=" in "".join(env):
        raise ValueError("illegal environment variable name")
    lines = "\0".join(map("=".join, env.items())).encode(_ENCODING, _ERRORS).split(b"\0")
    if len(lines) != len(env):
        raise ValueError("embedded null byte")
    return lines


@functools.lru_cache(maxsize=256)
def _executables(program: str, path: str | None) -> tuple[bytes, ...]:
    """Where exec looks for the program: itself if it has a slash, else each PATH entry
    (the run's own PATH, as Popen does)."""
    name = os.fsencode(program)
    if os.path.dirname(name):
        return (name,)
    env = None if path is None else {"PATH": path}
    return tuple(os.path.join(os.fsencode(folder), name) for folder in os.get_exec_path(env))


def _error_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    # The child dups its stdio onto 0-2; a write end there (the keeper started with a
    # standard stream closed) would be overwritten before the child could report.
    low: list[int] = []
    while write_end < 3:
        low.append(write_end)
        write_end = os.dup(write_end)
    for fd in low:
        os.close(fd)
    return read_end, write_end


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 50_000):
        chunks.append(chunk)
    return b"".join(chunks)


def _child_error(report: bytes, program: str, cwd: Path) -> Exception:
    """What the child wrote before it could exec, as the exception Popen raises for it."""
    try:
        name, hex_errno, raw = report.split(b":", 2)
        message = raw.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {report!r}")
    kind = getattr(builtins, name.decode("ascii", "replace"), subprocess.SubprocessError)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        kind = subprocess.SubprocessError
    if not (issubclass(kind, OSError) and hex_errno):
        return kind(message)
    number = int(hex_errno, 16)
    filename: str | Path | None = program
    if message == "noexec:chdir":
        message, filename = "", cwd
    elif message == "noexec":
        # 3.11's child says only "noexec" for a chdir that failed; later ones say which.
        message, filename = "", cwd if sys.version_info < (3, 12) else None
    if number:
        message = os.strerror(number)
    return kind(number, message) if filename is None else kind(number, message, filename)
