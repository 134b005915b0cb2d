"""What this host can enforce of a job's limits, probed once per process and cached: a
systemd user manager (each run in a transient scope with cgroup limits), else a pids
cgroup the keeper may write (tasks_max), rlimits, nice and ionice. `validate` shows the
table; core/limits_apply.py uses the probe for each run (and runs it at keeper start when
some job has limits: a keeper without any never imports this module)."""

from __future__ import annotations

import functools
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.core.limits import LIMIT_KEYS

# `systemctl --user is-system-running` says one of these when a manager answers at all
# ("offline" or an error when there is none: a container, a cron session without lingering).
_MANAGER_STATES = {"running", "degraded", "starting", "initializing", "maintenance"}
PROBE_TIMEOUT = 3.0
CGROUP_DIR = "watchkeeper"


@dataclass(frozen=True)
class HostLimits:
    systemd_run: str | None  # its path when a user manager answers, else None
    pids_root: Path | None  # a writable pids cgroup for runs, else None
    ionice: str | None
    root: bool  # the kernel exempts root from RLIMIT_NPROC
    lower_nice: bool  # may set a nice below 0


def user_manager(systemctl: str | None) -> bool:
    if systemctl is None:
        return False
    try:
        answer = subprocess.run(
            [systemctl, "--user", "is-system-running"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return answer.stdout.strip() in _MANAGER_STATES


def _pids_mount(mounts: str) -> Path | None:
    """The pids controller's hierarchy: a v1 mount with the `pids` option, else the v2
    mount when it offers pids."""
    unified: Path | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup" and "pids" in options:
            return where
        if kind == "cgroup2" and unified is None:
            unified = where
    if unified is not None:
        try:
            if "pids" in (unified / "cgroup.controllers").read_text().split():
                return unified
        except OSError:
            return None
    return None


def pids_cgroup(mounts_file: Path = Path("/proc/self/mounts")) -> Path | None:
    """watchkeeper/keeper-PID/ in the pids hierarchy (one a process, so keepers of other
    vaults never meet), made when the keeper may (root, or a delegated tree), with pids.max
    in it; None otherwise. What keepers that are gone left there is removed (an empty
    cgroup goes with rmdir; a busy one stays until it empties)."""
    try:
        mount = _pids_mount(mounts_file.read_text())
    except OSError:
        return None
    if mount is None:
        return None
    base = mount / CGROUP_DIR
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return None
    _prune(base)
    mine = base / f"keeper-{os.getpid()}"
    try:
        mine.mkdir(exist_ok=True)
    except OSError:
        return None
    return mine if (mine / "pids.max").exists() else None


def _prune(base: Path) -> None:
    for keeper in base.glob("keeper-*"):
        pid = keeper.name.removeprefix("keeper-")
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for stale in [*keeper.iterdir(), keeper]:
            if stale.is_dir():
                try:
                    stale.rmdir()
                except OSError:
                    continue


def _may_lower_nice() -> bool:
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    # RLIMIT_NICE n allows nice down to 20 - n.
    return soft == resource.RLIM_INFINITY or soft > 20


@functools.cache
def host_limits() -> HostLimits:
    import shutil  # with bz2, lzma and zlib (~2 ms): only the probe needs it

    systemd_run = shutil.which("systemd-run")
    if systemd_run is not None and not user_manager(shutil.which("systemctl")):
        systemd_run = None
    return HostLimits(
        systemd_run=systemd_run,
        pids_root=None if systemd_run else pids_cgroup(),
        ionice=shutil.which("ionice"),
        root=os.geteuid() == 0,
        lower_nice=_may_lower_nice(),
    )


def enforcement(host: HostLimits) -> dict[str, str]:
    """For each limit key, how this host enforces it (or that it does not)."""
    if host.systemd_run is not None:
        scope = "transient systemd scope (the run's whole tree)"
        return {
            "memory_max": f"MemoryMax= (and MemorySwapMax=0) of a {scope}",
            "tasks_max": f"TasksMax= of a {scope}",
            "cpu_weight": f"CPUWeight= of a {scope}",
            "nice": "setpriority() in the child before exec" + _nice_note(host),
            "io_weight": f"IOWeight= of a {scope} (needs the io controller)",
        }
    if host.pids_root is not None:
        tasks = f"pids.max of a cgroup of its own ({host.pids_root.parent}/keeper-PID/RUN): "
        tasks += "the run's whole tree"
    elif host.root:
        tasks = "NOT enforced: no systemd user manager, no writable pids cgroup, and the kernel "
        tasks += "exempts root from RLIMIT_NPROC"
    else:
        tasks = "RLIMIT_NPROC set to the user's process count at start + tasks_max (it counts "
        tasks += "every process of the user, so other work of the user eats into it)"
    io = "NOT enforced: no systemd scope and no ionice"
    if host.ionice is not None:
        io = "ionice best-effort level from the weight (no systemd scope; only the BFQ "
        io += "I/O scheduler honours it)"
    return {
        "memory_max": "RLIMIT_DATA in the child (heap and private mappings of each process "
        "of the run, not their sum)",
        "tasks_max": tasks,
        "cpu_weight": "as a nice level from the weight (no systemd scope)" + _nice_note(host),
        "nice": "setpriority() in the child before exec" + _nice_note(host),
        "io_weight": io,
    }


def _nice_note(host: HostLimits) -> str:
    return "" if host.lower_nice else "; below 0 refused here (needs CAP_SYS_NICE or RLIMIT_NICE)"


def enforcement_lines(host: HostLimits, used: set[str]) -> list[str]:
    """validate's lines: each limit key, marked with * when a job of the config sets it."""
    table = enforcement(host)
    how = "systemd user manager" if host.systemd_run else "no systemd user manager"
    lines = [f"limits on this host ({how}):"]
    for key in LIMIT_KEYS:
        mark = "*" if key in used else " "
        lines.append(f" {mark} {key:<10} {table[key]}")
    return lines
