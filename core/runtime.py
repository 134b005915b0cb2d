"""What the keeper holds per job and per run while it runs: plain data the parts share."""

from __future__ import annotations

import random
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from watchkeeper.core import tuning
from watchkeeper.core.config import JobConfig
from watchkeeper.core.environment import Masker
from watchkeeper.core.history import RunRecord
from watchkeeper.core.logs import RotatingFile
from watchkeeper.core.output import OutputSink
from watchkeeper.core.seams import RunHandle
from watchkeeper.core.triggers import Schedule


class UnknownJob(LookupError):
    """No job of that name in the running config."""

    def __init__(self, job: str) -> None:
        super().__init__(job)
        self.job = job

    def __str__(self) -> str:
        return f"no job named {self.job!r}"


def new_run_id() -> str:
    # Not a secret, only unique: the PRNG spares a getrandom() call per run.
    return f"{time.time_ns() // 1_000_000:x}-{random.getrandbits(24):06x}"


@dataclass(slots=True)
class StartRequest:
    job: str
    trigger: str
    attempt: int = 1
    files: list[str] = field(default_factory=list)
    due_mono: float | None = None
    due_wall: float | None = None  # the slot's time on the wall clock
    run_id: str = field(default_factory=new_run_id)
    wave: str | None = None
    """Runs of one wave (one slot, one --once, one manual start and what follows from
    it) satisfy `after` lists together."""
    params: dict[str, str] | None = None
    """Values given for the job's params (run -p, the console's form); None: defaults."""


class RunQueue(list[StartRequest]):
    """A job's queued runs, oldest first. A list, not a deque: an empty deque takes
    ~700 bytes, thousands of jobs have one, and a queue rarely holds more than a few."""

    __slots__ = ()

    def popleft(self) -> StartRequest:
        return self.pop(0)


@dataclass(slots=True)
class JobRuntime:
    config: JobConfig
    schedules: tuple[Schedule, ...]  # shared by the jobs with the same trigger
    open_log: Callable[[str], RotatingFile]  # the job's log, from its name
    base_env: dict[str, str]
    masker: Masker
    next_due: list[float] = field(default_factory=list)
    active: dict[str, ActiveRun] = field(default_factory=dict)
    queued: RunQueue = field(default_factory=RunQueue)
    last: RunRecord | None = None
    missed_while_paused: int = 0
    file_request: bool = False
    files_not_before: float = 0.0
    _waves: OrderedDict[str, set[str]] | None = field(default=None, init=False, repr=False)
    _log: RotatingFile | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def log(self) -> RotatingFile:
        """Made at the job's first run: most of 10,000 jobs idle for hours, and each
        log waiting made held ~100 bytes."""
        if self._log is None:
            self._log = self.open_log(self.config.name)
        return self._log

    @property
    def waves(self) -> OrderedDict[str, set[str]]:
        """Only a job with `after` uses its waves (core/chains.py): made on first use."""
        if self._waves is None:
            self._waves = OrderedDict()
        return self._waves


@dataclass(slots=True)
class ActiveRun:
    request: StartRequest
    record: RunRecord
    run: RunHandle | None  # None while the executor starts it
    sink: OutputSink
    runtime: JobRuntime
    stop_asked: tuple[str, str] | None = None

    def stop(self, status: str, reason: str) -> None:
        if self.run is None:
            self.stop_asked = (status, reason)  # applied the moment it has started
        else:
            self.run.stop(status, reason)


class OpenLogs:
    """Job logs stay open between runs (an open per run cost more than the run's other
    writes together); the least recently used are closed past a limit."""

    def __init__(self) -> None:
        self._logs: OrderedDict[RotatingFile, None] = OrderedDict()
        self.limit = tuning.OPEN_LOGS

    def fit_to_limit(self) -> None:
        """Each run holds a pipe and a pidfd besides its log: logs get an eighth of the
        open-file limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = 1 << 20 if soft == resource.RLIM_INFINITY else soft
        self.limit = max(tuning.OPEN_LOGS_MIN, files // 8)

    def keep_open(self, log: RotatingFile, in_flight: Iterable[ActiveRun]) -> None:
        self._logs[log] = None
        self._logs.move_to_end(log)
        while len(self._logs) > self.limit:
            oldest, _ = self._logs.popitem(last=False)
            if not any(active.runtime.log is oldest for active in in_flight):
                oldest.close()

    def close(self) -> None:
        for log in self._logs:
            log.close()
