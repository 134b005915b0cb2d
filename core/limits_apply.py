"""One run's limits, applied: the argv it is started with (inside `systemd-run --user
--scope`, or behind `ionice`), what its child does between fork and exec (rlimits,
setpriority, joining its pids cgroup), and after it ends which limit ended it.

The child stays the leader of its own process group whichever way: systemd-run and ionice
exec the command in place, so timeout, cancel and shutdown still end the whole group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.core.limits import (
    LIMIT_KEYS,
    Evidence,
    Limits,
    limit_hit,
    used_limits,
    weight_as_ionice,
    weight_as_nice,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from watchkeeper.core.limits_host import HostLimits
    from watchkeeper.core.logs import KeeperLog

TAIL_BYTES = 4096  # the end of the output, where an allocation or a fork refused is told
# A KILLed process leaves its cgroup within milliseconds; one stuck in the kernel (D state)
# is given two seconds, then its cgroup waits for a later keeper's start.
RELEASE_EVERY, RELEASE_TRIES = 0.02, 100
Later = Callable[[float, Callable[[], None]], object]


class LimitError(ValueError):
    """A limit this host refuses for this run (a negative nice without the privilege)."""


def scope_argv(systemd_run: str, unit: str, limits: Limits, argv: list[str]) -> list[str]:
    """`systemd-run --user --scope` around the command. --collect drops the unit however
    it ended; MemorySwapMax=0 makes memory_max the memory the run has, not that plus swap."""
    line = [systemd_run, "--user", "--scope", "--quiet", "--collect", f"--unit={unit}"]
    if limits.memory_max is not None:
        line += ["-p", f"MemoryMax={limits.memory_max}", "-p", "MemorySwapMax=0"]
    if limits.tasks_max is not None:
        line += ["-p", f"TasksMax={limits.tasks_max}"]
    if limits.cpu_weight is not None:
        line += ["-p", f"CPUWeight={limits.cpu_weight}"]
    if limits.io_weight is not None:
        line += ["-p", f"IOWeight={limits.io_weight}"]
    return [*line, "--", *argv]


def unit_name(job: str, run_id: str) -> str:
    # A job's name is [A-Za-z0-9_.-]: all of it allowed in a unit name.
    return f"watchkeeper-{job or 'run'}-{run_id}.scope"


def user_processes(uid: int, proc: Path = Path("/proc")) -> int:
    """How many processes the user has now: RLIMIT_NPROC counts them all."""
    count = 0
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


@dataclass
class Limited:
    """A run started with limits: what to start, the child's setup, and its evidence."""

    limits: Limits
    argv: list[str]
    nice: int | None = None
    data_max: int | None = None  # RLIMIT_DATA
    nproc_max: int | None = None  # RLIMIT_NPROC
    cgroup: Path | None = None  # the run's own pids cgroup
    in_scope: bool = False
    tail: bytearray = field(default_factory=bytearray)

    def before_exec(self) -> None:
        """In the forked child. Only syscalls: no locks another thread could hold."""
        if self.cgroup is not None:
            fd = os.open(self.cgroup / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"%d" % os.getpid())
            finally:
                os.close(fd)
        if self.nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        if self.data_max is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (self.data_max, self.data_max))
        if self.nproc_max is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc_max, self.nproc_max))

    @property
    def preexec(self) -> Callable[[], None] | None:
        needed = self.cgroup or self.nice is not None or self.data_max or self.nproc_max
        return self.before_exec if needed else None

    def keep(self, data: bytes) -> None:
        self.tail += data
        del self.tail[:-TAIL_BYTES]

    def judge(self, ended_by: int | None, pid: int) -> str | None:
        """For a run that failed by itself (not one the keeper stopped), the limit that
        ended it: `memory_max 512MB exceeded`; None when nothing says one did. `pid` is
        its leader, still a zombie: its /proc entry names the scope it ran in."""
        group = self.cgroup
        if self.in_scope:
            group = scope_cgroup(pid)
        evidence = Evidence(
            oom_kills=counter(group, "memory.events", "oom_kill") if self.in_scope else None,
            forks_refused=counter(group, "pids.events", "max"),
            tail=bytes(self.tail),
            # Under a scope whose memory.events is gone (systemd removes an empty scope at
            # once), a SIGKILL nobody sent is the OOM killer's as far as we can tell.
            killed=self.in_scope and ended_by == signal.SIGKILL,
        )
        return limit_hit(self.limits, evidence)

    def release(self, later: Later | None = None, tries: int = RELEASE_TRIES) -> None:
        """Remove the run's cgroup once its group is gone. Whatever is still in it (a
        setsid'd daemon that left the group, or the group's last KILLed members on their
        way out) is killed: the run's tree ends with the run. Tried again `later` while
        they die; a cgroup still busy after that is pruned at a later start."""
        if self.cgroup is None:
            return
        try:
            self.cgroup.rmdir()
            return
        except OSError:
            pass
        with contextlib.suppress(OSError, ValueError):
            for pid in (self.cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        if later is not None and tries > 1:
            later(RELEASE_EVERY, lambda: self.release(later, tries - 1))


def scope_cgroup(
    pid: int, proc: Path = Path("/proc"), root: Path = Path("/sys/fs/cgroup")
) -> Path | None:
    """The cgroup v2 directory a process is in (systemd's scopes live in the unified tree)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::/"):
            return root / line[4:]
    return None


def counter(group: Path | None, file: str, name: str) -> int | None:
    """One counter of a cgroup's events file (`max 3` in pids.events, `oom_kill 1` in
    memory.events): exact, where the output's words are a guess. None if unreadable."""
    if group is None:
        return None
    try:
        text = (group / file).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, count = line.partition(" ")
        if key == name and count.strip().isdigit():
            return int(count)
    return None


def prepare(
    limits: Limits, argv: list[str], job: str, run_id: str, host: HostLimits | None = None
) -> Limited:
    """How this run starts under its limits on this host. Raises LimitError for one the
    host refuses."""
    from watchkeeper.core.limits_host import host_limits  # a job with limits: probed once

    host = host or host_limits()
    nice = limits.nice
    if nice is None and limits.cpu_weight is not None and host.systemd_run is None:
        nice = weight_as_nice(limits.cpu_weight)
    if nice is not None and nice < 0 and not host.lower_nice:
        key = "nice" if limits.nice is not None else f"cpu_weight {limits.cpu_weight} (nice"
        raise LimitError(f"{key} {nice}{')' if limits.nice is None else ''} needs CAP_SYS_NICE")
    if host.systemd_run is not None:
        wrapped = scope_argv(host.systemd_run, unit_name(job, run_id), limits, argv)
        return Limited(limits, wrapped, nice=nice, in_scope=True)
    limited = Limited(limits, argv, nice=nice, data_max=limits.memory_max)
    if limits.io_weight is not None and host.ionice is not None:
        level = weight_as_ionice(limits.io_weight)
        limited.argv = [host.ionice, "-c", "2", "-n", str(level), "--", *argv]
    if limits.tasks_max is not None:
        if host.pids_root is not None:
            limited.cgroup = _make_cgroup(host.pids_root / run_id, limits.tasks_max)
        elif not host.root:
            uid = os.geteuid()
            limited.nproc_max = user_processes(uid) + limits.tasks_max
    return limited


def _make_cgroup(path: Path, tasks_max: int) -> Path:
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(tasks_max))
    except OSError as error:
        with contextlib.suppress(OSError):
            path.rmdir()
        raise LimitError(f"cannot make its pids cgroup {path}: {error.strerror}") from None
    return path


async def probe_at_start(jobs: Iterable[Any], log: KeeperLog) -> None:
    """At keeper start, when some job has limits: probe the host in a thread (systemctl
    may take a while to answer), so no run's spawn waits for it, and log how each limit
    the config uses is enforced."""
    used = used_limits(jobs)
    if not used:
        return
    from watchkeeper.core.limits_host import enforcement, host_limits

    host = await asyncio.to_thread(host_limits)
    table = enforcement(host)
    log.info("limits: " + "; ".join(f"{key} by {table[key]}" for key in LIMIT_KEYS if key in used))
