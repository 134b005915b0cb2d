"""A run's guard on a worker's host: the one process between the worker and the run's
process group, so the group ends even when the worker is killed outright (kill -9, OOM).

The worker starts `python -I -S guard.py STATUS_FD` (stdlib only, so it starts in ~20 ms
without the site machinery) with the run's spec as JSON on stdin. The guard
- asks the kernel for SIGTERM when the worker dies (PR_SET_PDEATHSIG);
- starts the command in a process group of its own, stdin /dev/null, stdout and stderr
  into one pipe it copies to its own stdout (the worker's pipe);
- on SIGTERM (the worker's cancel or timeout, or the worker's death) sends TERM to the
  group, then KILL after kill_grace; when the command exits, leftovers in its group get
  the same (TERM now, KILL once the grace is over if they still hold the output);
- writes `pid N` once the command started, then `exit code N`, `exit signal N` or
  `error ERRNO MESSAGE` to STATUS_FD, and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
READ_SIZE = 65536


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the worker died before the request took effect
        sys.exit(1)


def _end_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Guard:
    def __init__(self, spec: dict[str, object], status_fd: int) -> None:
        self.spec = spec
        self.status = status_fd
        self.grace = float(spec.get("kill_grace", 5.0))  # type: ignore[arg-type]
        self.stop_asked = False
        self.kill_at: float | None = None
        self.exited: os.waitid_result | None = None
        self.pipe = -1

    def report(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the worker is gone: nobody to tell
            os.write(self.status, (line + "\n").encode())

    def start(self) -> subprocess.Popen[bytes] | None:
        read_end, write_end = os.pipe()
        try:
            child = subprocess.Popen(
                list(self.spec["argv"]),  # type: ignore[call-overload]
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                cwd=str(self.spec["cwd"]),
                env=dict(self.spec["env"]),  # type: ignore[call-overload]
                process_group=0,
                close_fds=True,
            )
        except OSError as error:
            os.close(read_end)
            self.report(f"error {error.errno or 0} {error.strerror or error}")
            return None
        finally:
            os.close(write_end)
        self.pipe = read_end
        self.report(f"pid {child.pid}")
        return child

    def watch(self, child: subprocess.Popen[bytes]) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select through the fd
        selector = selectors.DefaultSelector()
        selector.register(self.pipe, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        pipe_open = True
        deadline: float | None = None  # when the group gets KILL
        killed = False
        while self.exited is None or pipe_open:
            timeout = None if deadline is None or killed else deadline - time.monotonic()
            for key, _ in selector.select(None if timeout is None else max(0.0, timeout)):
                if key.fd == wake_read:
                    os.read(wake_read, 512)
                elif not self._copy():
                    selector.unregister(self.pipe)
                    os.close(self.pipe)
                    pipe_open = False
            if self.stop_asked and deadline is None:
                _end_group(child.pid, signal.SIGTERM)
                deadline = time.monotonic() + self.grace
            if self.exited is None:
                # WNOWAIT keeps the leader a zombie, so its pid (the group id) is not
                # reused while leftovers in its group are signalled.
                self.exited = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if self.exited is not None:
                    _end_group(child.pid, signal.SIGTERM)
                    deadline = deadline or time.monotonic() + self.grace
            if deadline is not None and not killed and time.monotonic() >= deadline:
                _end_group(child.pid, signal.SIGKILL)
                killed = True
            if killed and self.exited is not None and pipe_open:
                # A leftover that left the group still holds the output: stop waiting.
                selector.unregister(self.pipe)
                os.close(self.pipe)
                pipe_open = False
        child.wait()
        info = self.exited
        assert info is not None
        if info.si_code == os.CLD_EXITED:
            self.report(f"exit code {info.si_status}")
        else:
            self.report(f"exit signal {info.si_status}")

    def _on_stop(self, *_: object) -> None:
        self.stop_asked = True

    def _copy(self) -> bool:
        try:
            data = os.read(self.pipe, READ_SIZE)
        except BlockingIOError:
            return True
        if not data:
            return False
        # The worker died: the group is being ended, its output has nowhere to go.
        with contextlib.suppress(BrokenPipeError):
            os.write(1, data)
        return True


def main(argv: list[str]) -> int:
    status_fd = int(argv[1])
    parent = int(argv[2]) if len(argv) > 2 else os.getppid()
    _die_with_parent(parent)
    # Ctrl-C at the worker's terminal is the worker's to handle: it ends its runs itself.
    # A handler, not SIG_IGN: an ignored signal stays ignored in the command after exec.
    signal.signal(signal.SIGINT, lambda *_: None)
    spec = json.loads(sys.stdin.buffer.read())
    guard = Guard(spec, status_fd)
    child = guard.start()
    if child is None:
        return 0
    guard.watch(child)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
