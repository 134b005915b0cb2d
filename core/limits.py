"""A job's resource limits (`memory_max`, `tasks_max`, `cpu_weight`, `nice`, `io_weight`):
their values, checked at load, and the words a run ended by one of them is recorded with.
How this host enforces them is core/limits_host.py; how a run gets them, limits_apply.py."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from watchkeeper.core.units import brief, parse_size

MIB = 1024**2
# Below a few MiB no interpreter or shell even starts; above 1 TiB is a typo.
MIN_MEMORY, MAX_MEMORY = 4 * MIB, 1024**4
LIMIT_KEYS = ("memory_max", "tasks_max", "cpu_weight", "nice", "io_weight")


@dataclass(frozen=True, slots=True)
class Limits:
    memory_max: int | None = None  # bytes
    tasks_max: int | None = None
    cpu_weight: int | None = None  # systemd's CPUWeight scale: 100 is the default share
    nice: int | None = None
    io_weight: int | None = None  # systemd's IOWeight scale: 100 is the default share

    def __bool__(self) -> bool:
        return any(getattr(self, key) is not None for key in LIMIT_KEYS)


_LIMIT_VALUES = attrgetter(*LIMIT_KEYS)
_NO_LIMITS = (None,) * len(LIMIT_KEYS)


def limits_of(fields: Any) -> Limits | None:
    """The limits a job (anything with the five attributes) asks for, None if none.
    Asked at every run: most jobs have none, and that answer takes one C call."""
    values = _LIMIT_VALUES(fields)
    return None if values == _NO_LIMITS else Limits(*values)


def used_limits(jobs: Iterable[Any]) -> set[str]:
    """The limit keys some job sets."""
    return {key for job in jobs for key in LIMIT_KEYS if getattr(job, key) is not None}


def limits_text(job: Any) -> str:
    """`memory_max 512MB, nice 5`: what describe and the console show; "" for none."""
    shown = []
    for key in LIMIT_KEYS:
        value = getattr(job, key)
        if value is not None:
            shown.append(f"{key} {size_text(value) if key == 'memory_max' else value}")
    return ", ".join(shown)


def size_text(size: int) -> str:
    """512MB, 1.5GB, 4096KB: as the operator would have written it."""
    for unit, scale in (("TB", 1024**4), ("GB", 1024**3), ("MB", MIB), ("KB", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:g}{unit}" if value * 10 == int(value * 10) else f"{size}B"
    return f"{size}B"


def memory_max(value: object) -> int:
    size = parse_size(value)
    if not MIN_MEMORY <= size <= MAX_MEMORY:
        raise ValueError(f"expected a size from 4MB to 1TB like '512MB', got {brief(value)}")
    return size


def _between(low: int, high: int) -> Any:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer from {low:,} to {high:,}, got {brief(value)}")
        return value

    return convert


# TasksMax counts threads too: a run of one Python program with a thread pool needs ~10.
tasks_max = _between(1, 1_000_000)
cpu_weight = _between(1, 10_000)
nice = _between(-20, 19)
io_weight = _between(1, 10_000)


def limit_problems(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for limits on a job that starts no process here."""
    asked = [key for key in LIMIT_KEYS if key in fields]
    if not asked:
        return []
    if "http" in fields:
        return [(key, "an http job starts no process: there is nothing to limit") for key in asked]
    runs_on = fields.get("runs_on")
    if runs_on is not None and runs_on != ("keeper",):
        return [(asked[0], 'limits are applied on the keeper\'s host: runs_on = "keeper"')]
    return []


def weight_as_nice(weight: int) -> int:
    """The niceness whose CFS share matches a CPUWeight (100 = nice 0; each step of nice is
    a factor of about 1.25 in the kernel's weight table), for hosts without cgroups."""
    return max(-20, min(19, round(-math.log(weight / 100) / math.log(1.25))))


def weight_as_ionice(weight: int) -> int:
    """The best-effort ionice level (0 first .. 7 last; 4 is the default) nearest an
    IOWeight, on the same logarithmic scale: 100 is level 4, each level a factor of 2."""
    return max(0, min(7, 4 - round(math.log2(weight / 100))))


# What a program says when an allocation is refused under RLIMIT_DATA, or a fork under
# RLIMIT_NPROC / pids.max (Python, glibc's strerror, dash, bash, coreutils).
MEMORY_WORDS = (b"MemoryError", b"Cannot allocate memory", b"out of memory", b"bad_alloc")
FORK_WORDS = (b"Cannot fork", b"fork: retry", b"Resource temporarily unavailable", b"can't fork")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the end of a run tells about its limits: counters read from its cgroup (exact),
    else its last output and how it ended (heuristic)."""

    oom_kills: int | None = None  # memory.events oom_kill of its scope, when readable
    forks_refused: int | None = None  # pids.events max of its cgroup, when readable
    tail: bytes = b""
    killed: bool = False  # ended by SIGKILL that the keeper did not send


def limit_hit(limits: Limits, evidence: Evidence) -> str | None:
    """`memory_max 512MB exceeded`, `tasks_max 20 exceeded`, or None: for a run that
    failed, which limit ended it."""
    if limits.memory_max is not None:
        said = f"memory_max {size_text(limits.memory_max)} exceeded"
        if evidence.oom_kills:
            return said
        if evidence.oom_kills is None and evidence.killed:
            return f"{said} (killed by SIGKILL: likely the OOM killer)"
        if any(word in evidence.tail for word in MEMORY_WORDS):
            return said
    if limits.tasks_max is not None:
        said = f"tasks_max {limits.tasks_max} exceeded"
        if evidence.forks_refused:
            return said
        if evidence.forks_refused is None and any(word in evidence.tail for word in FORK_WORDS):
            return said
    return None
