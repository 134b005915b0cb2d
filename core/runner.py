"""One run = one child process group, watched through a pidfd and one output pipe.

The event loop never blocks on a child: exit arrives as a readable pidfd, output as a
readable pipe (watched once the run has lasted OUTPUT_WATCH_AFTER; most runs end sooner,
and what they wrote is read when they exit). Timeout, cancel and shutdown end the whole
group: TERM, then KILL after a grace period. When the main process exits, whatever it left
behind in its group is ended the same way, so a finished run leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.core import tuning
from watchkeeper.core.child_start import Child, start_child
from watchkeeper.core.fdwatch import FdWatch
from watchkeeper.core.history_format import elapsed_ms
from watchkeeper.core.limits import Limits
from watchkeeper.core.limits_apply import Limited, prepare
from watchkeeper.core.units import format_duration

if TYPE_CHECKING:
    from watchkeeper.core.config_http import HttpCall


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    timeout: float | None = None
    kill_grace: float = 5.0
    # Where it runs (the job's runs_on: "keeper", "any" or labels; core/cluster/remote.py
    # routes by it) and the job it belongs to (a worker's record of it).
    runs_on: tuple[str, ...] = ("keeper",)
    job: str = ""
    http: HttpCall | None = None  # an http job's request: core/http_job.py runs it
    limits: Limits | None = None  # memory_max, tasks_max...: core/limits_apply.py


@dataclass(frozen=True)
class RunOutcome:
    status: str
    exit_code: int | None
    error: str | None
    duration_ms: int


class Ending:
    """A watched run's end (seams.RunHandle's `done` and `on_end`), for each RunHandle."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done: asyncio.Future[RunOutcome] | None = None
        self.final: RunOutcome | None = None  # the outcome, once it has ended
        self._end_listeners: list[Callable[[RunOutcome], None]] = []

    @property
    def done(self) -> asyncio.Future[RunOutcome]:
        """Made when first asked for: the keeper hears of an end through on_end(), and a
        future a run cost it calls for nothing."""
        if self._done is None:
            self._done = self._loop.create_future()
            if self.final is not None:
                self._done.set_result(self.final)
        return self._done

    def on_end(self, listener: Callable[[RunOutcome], None]) -> None:
        if self.final is not None:
            listener(self.final)
        else:
            self._end_listeners.append(listener)

    def finish_with(self, outcome: RunOutcome) -> None:
        if self.final is not None:
            return
        self.final = outcome
        if self._done is not None and not self._done.done():  # a waiter may have cancelled it
            self._done.set_result(outcome)
        # Let go of them, as a future does of its callbacks: a listener holds the keeper's
        # record of the run, which holds this run, and that cycle would keep both (and the
        # run's environment) until a full collection.
        listeners, self._end_listeners = self._end_listeners, []
        for listener in listeners:
            listener(outcome)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _end_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 (contextlib.suppress: three Python calls more, at every run's end)
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Spawned:
    child: Child
    read_end: int | None  # non-blocking; None once read to its end ahead of the loop
    started_mono: float
    early_output: bytes = b""
    limited: Limited | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    def read_ahead(self) -> None:
        """Take what the child has written so far, and close the pipe if that is all:
        while a burst is held back, each pipe left open makes every later spawn dearer
        (the child copies and then closes every descriptor we hold)."""
        assert self.read_end is not None
        chunks: list[bytes] = []
        size = 0
        while size < tuning.READ_SIZE:  # what a held-back run keeps in memory at most
            try:
                data = os.read(self.read_end, tuning.READ_SIZE - size)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                os.close(self.read_end)
                self.read_end = None
                break
            chunks.append(data)
            size += len(data)
        self.early_output = b"".join(chunks)


@functools.cache
def _stdin() -> int:
    """/dev/null for every child's stdin, opened once (Popen's DEVNULL opens it per child)."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def spawn(spec: RunSpec) -> Spawned:
    """Start the child in a process group of its own. Blocking (the parent waits while
    the vfork'd child execs) but thread-safe: the keeper calls it off its loop."""
    limited = prepare(spec.limits, spec.argv, spec.job, spec.run_id) if spec.limits else None
    read_end, write_end = os.pipe()
    try:
        child = start_child(
            limited.argv if limited else spec.argv,
            spec.env,
            spec.cwd,
            _stdin(),
            write_end,
            # Only a limited run forks without vfork: its child sets rlimits before exec.
            limited.preexec if limited else None,
        )
    except BaseException:
        os.close(read_end)
        if limited:
            limited.release()
        raise
    finally:
        os.close(write_end)
    started_mono = time.monotonic()
    # Here rather than on the loop, which has enough to do while a burst of runs starts.
    os.set_blocking(read_end, False)
    return Spawned(child, read_end, started_mono, limited=limited)


SpawnResult = tuple[Any, Spawned | Exception]


class Spawner:
    """Threads that start children off the event loop (spawn() blocks while the child
    execs). What they started goes back to the loop in batches: one wakeup for however
    many spawns ended meanwhile, not one per spawn.

    While runs wait in the queue, results are held back (up to HOLD_MAX): the loop's work
    on them (watching pipes and exits, records, events) would compete with the spawning
    for the CPUs and the GIL, and a burst of due runs starts a fifth sooner when it
    does not."""

    def __init__(self, threads: int, deliver: Callable[[list[SpawnResult]], None]) -> None:
        self._size = threads
        self._deliver = deliver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._todo: queue.SimpleQueue[tuple[Any, RunSpec] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._done: list[SpawnResult] = []
        self._read_ahead_upto = 0  # runs in _done before this were read ahead
        self._held_since = 0.0
        self._handing_over = False
        self._threads_only_until = 0.0

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        """Start each spec; `deliver` gets (token, Spawned or the error) on the loop this
        is called on. A few specs with no burst waiting are spawned right here and
        delivered before this returns: handing them to a thread and back costs more than
        the loop's wait while each child execs, and a thread that must win the GIL from a
        busy loop starts them later still. Unless an exec was slow lately (a program on a
        slow file system): then the loop must not wait for it."""
        if len(batch) <= tuning.INLINE_MAX and self._todo.empty():
            done: list[SpawnResult] = []
            while batch and time.monotonic() >= self._threads_only_until:
                (token, spec), batch = batch[0], batch[1:]
                began = time.monotonic()
                result: Spawned | Exception
                try:
                    result = spawn(spec)
                except Exception as error:
                    result = error
                if time.monotonic() - began > tuning.SLOW_SPAWN:
                    self._threads_only_until = time.monotonic() + tuning.SLOW_SPAWN_BACKOFF
                done.append((token, result))
            if done:
                self._deliver(done)
            if not batch:
                return
        if self._loop is None:
            # Started with the first batch, so a keeper that never has one has none.
            self._loop = asyncio.get_running_loop()
            for number in range(self._size):
                thread = threading.Thread(target=self._work, name=f"spawn_{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        for item in batch:
            self._todo.put(item)

    def shutdown(self) -> None:
        """Let the threads finish what was submitted, then end them."""
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._loop = None

    def _work(self) -> None:
        assert self._loop is not None
        loop = self._loop
        while (item := self._todo.get()) is not None:
            token, spec = item
            result: Spawned | Exception
            try:
                result = spawn(spec)
            except Exception as error:
                result = error
            now = time.monotonic()
            with self._lock:
                self._done.append((token, result))
                if len(self._done) == 1:
                    self._held_since = now
                self._read_ahead(now)
                # Held while runs wait in the queue (a burst), not while runs merely keep
                # coming (a steady stream keeps some thread spawning all the time).
                hand_over = not self._handing_over and (
                    self._todo.empty() or now - self._held_since > tuning.HOLD_MAX
                )
                self._handing_over |= hand_over
            if hand_over:
                with contextlib.suppress(RuntimeError):  # the loop closed under us
                    loop.call_soon_threadsafe(self._hand_over)

    def _read_ahead(self, now: float) -> None:
        """Under the lock, so the loop never takes a pipe being read. At most two runs a
        spawn, each once, so a burst of long jobs costs a read or two per spawn."""
        for _ in range(2):
            if self._read_ahead_upto == len(self._done):
                return
            result = self._done[self._read_ahead_upto][1]
            if isinstance(result, Spawned):
                if now - result.started_mono < tuning.READ_AHEAD_AGE:
                    return
                result.read_ahead()
            self._read_ahead_upto += 1

    def _hand_over(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._read_ahead_upto = 0
            self._handing_over = False
        self._deliver(done)


class Run(Ending):
    """A started child. `done` resolves once the main process has exited and the group's
    output is closed (or the leftovers were killed)."""

    def __init__(
        self,
        spec: RunSpec,
        on_output: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop | None = None,
        spawned: Spawned | None = None,
        fds: FdWatch | None = None,
    ) -> None:
        self.spec = spec
        self.loop = loop or asyncio.get_running_loop()
        super().__init__(self.loop)
        self._fds = fds or FdWatch.of(self.loop)
        self.on_output = on_output
        self._stop_status: str | None = None
        self._stop_reason: str | None = None
        self._ended_by: int | None = None  # the signal that ended the leader
        self._outcome: RunOutcome | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._timeout_timer: asyncio.TimerHandle | None = None
        spawned = spawned or spawn(spec)
        self._limited = spawned.limited
        if self._limited is not None:  # its output's end may tell which limit ended it
            self.on_output = _keeping_tail(on_output, self._limited)
        self.child = spawned.child
        self.started_mono = spawned.started_mono
        read_end = spawned.read_end
        self.pid = self.child.pid
        try:
            # Opened only now: every descriptor we hold is copied into each child we
            # start (and closed there), so a burst of held-back runs makes spawns dearer.
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:
            # Unwatchable (out of descriptors): end it rather than leave it running unseen.
            _end_group(self.pid, signal.SIGKILL)
            self.child.reap()
            if read_end is not None:
                os.close(read_end)
            raise
        if spawned.early_output:
            self.on_output(spawned.early_output)
        self._pipe: int | None = read_end
        if read_end is not None:
            self._fds.add_after(tuning.OUTPUT_WATCH_AFTER, read_end, self._read_output)
        self._fds.add(self._pidfd, self._leader_exited)
        if spec.timeout:
            self._timeout_timer = self.loop.call_later(
                spec.timeout,
                self.stop,
                "timeout",
                f"timed out after {format_duration(spec.timeout)}",
            )

    def stop(self, status: str, reason: str) -> None:
        """End the run's group: TERM now, KILL after the grace period."""
        if self._outcome is not None or self._stop_status is not None:
            return
        self._stop_status, self._stop_reason = status, reason
        _end_group(self.pid, signal.SIGTERM)
        self._kill_timer = self.loop.call_later(self.spec.kill_grace, self._kill_group)

    def _kill_group(self) -> None:
        _end_group(self.pid, signal.SIGKILL)

    def _take_output(self) -> bool:
        """Hand on one read of the pipe, closing it at its end; False once nothing more
        is there for now."""
        assert self._pipe is not None
        try:
            data = os.read(self._pipe, tuning.READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            self.on_output(data)
            return True
        self._close_pipe()
        return False

    def _close_pipe(self) -> None:
        assert self._pipe is not None
        self._fds.remove(self._pipe)  # watched, or waiting to be
        os.close(self._pipe)
        self._pipe = None

    def _read_output(self) -> None:
        self._take_output()
        if self._pipe is None and self._outcome is not None:
            self._finish()

    def _leader_exited(self) -> None:
        assert self._pidfd is not None
        duration_ms = elapsed_ms(time.monotonic() - self.started_mono)
        # WNOWAIT keeps the leader a zombie, so its pid (the group id) cannot be reused
        # while we signal whatever is left in the group. WNOHANG: a descriptor number
        # reused within one batch of the FdWatch may call us before our leader is done.
        info: os.waitid_result | None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if info is None:
                return
        except ChildProcessError:  # reaped by someone else: its status is gone
            info = None
        self._fds.remove(self._pidfd)
        self._outcome = self._judge(info, duration_ms)
        if self._timeout_timer is not None:
            self._timeout_timer.cancel()
        _end_group(self.pid, signal.SIGTERM)
        if self._pipe is not None and self._fds.waiting(self._pipe):  # output waits there
            for _ in range(tuning.EXIT_READS):
                if not self._take_output():
                    break
        if self._pipe is None:
            self._finish()
            return
        # Leftovers hold the output open: give them the grace period, then KILL.
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._kill_timer = self.loop.call_later(self.spec.kill_grace, self._reap_leftovers)

    def _reap_leftovers(self) -> None:
        self._kill_group()
        if self._pipe is not None:
            self._close_pipe()
        self._finish()

    def _judge(self, info: os.waitid_result | None, duration_ms: int) -> RunOutcome:
        if info is None:
            return RunOutcome("failure", None, "exit status lost", duration_ms)
        if info.si_code == os.CLD_EXITED:
            exit_code = info.si_status
            error = None if exit_code == 0 else f"exit code {exit_code}"
        else:
            self._ended_by = info.si_status
            exit_code = 128 + info.si_status
            error = f"ended by {_signal_name(info.si_status)}"
        if self._stop_status is not None:
            return RunOutcome(self._stop_status, exit_code, self._stop_reason, duration_ms)
        return RunOutcome("success" if exit_code == 0 else "failure", exit_code, error, duration_ms)

    def _finish(self) -> None:
        if self.final is not None:
            return
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        assert self._outcome is not None
        if self._limited is not None and self._outcome.status == "failure":
            # A run that failed by itself (one the keeper stopped has its stop's status),
            # judged once all its output is in and before the leader is reaped (its /proc
            # entry names its scope): which limit, if any, ended it.
            hit = self._limited.judge(self._ended_by, self.pid)
            if hit is not None:
                self._outcome = replace(self._outcome, error=hit)
        self.child.reap()
        if self._limited is not None:
            self._limited.release(self.loop.call_later)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self.finish_with(self._outcome)


def _keeping_tail(on_output: Callable[[bytes], None], limited: Limited) -> Callable[[bytes], None]:
    def feed(data: bytes) -> None:
        limited.keep(data)
        on_output(data)

    return feed


class LocalExecutor:
    """The Executor of one machine (see core/seams.py): each run a process group here,
    started by the Spawner's threads and watched on the loop by a Run."""

    def __init__(
        self, deliver: Callable[[list[SpawnResult]], None], threads: int = tuning.SPAWN_THREADS
    ) -> None:
        self._spawner = Spawner(threads, deliver)
        self._fds: FdWatch | None = None  # the loop's, found at the first run

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        self._spawner.submit(batch)

    def watch(self, spec: RunSpec, started: Spawned, on_output: Callable[[bytes], None]) -> Run:
        return Run(spec, on_output, None, started, self._watch())

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> Run:
        return Run(spec, on_output, None, None, self._watch())

    def _watch(self) -> FdWatch:
        if self._fds is None:
            self._fds = FdWatch.of(asyncio.get_running_loop())
        return self._fds

    def shutdown(self) -> None:
        self._spawner.shutdown()
