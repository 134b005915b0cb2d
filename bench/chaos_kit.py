"""What every phase of bench/chaos.py needs: real `watchkeeper --daemon` processes, the
vault's records read as an operator would (history folded by id, the file ledger), the
run processes found in /proc, and one raw request on the control socket."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

CLI = Path(sys.executable).parent / "watchkeeper"
MARK = "wk-chaos-run"
"""In every job command's argv ($0 of its `sh -c`), so a leftover is recognisable in ps."""
FINAL = frozenset({"success", "failure", "timeout", "skipped", "cancelled", "interrupted"})
KEEPER_FDS = 1024
"""The keeper gets the usual soft limit on open files, whatever the harness raised its own
to: a crowd of clients must not get through only because the limit was lifted."""


def daemon_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    env["NO_COLOR"] = "1"
    return env


def job_command(seen: Path, script: str) -> str:
    """A TOML array running `script` under sh with MARK as its $0, after noting the run id
    in `seen` (outside Logs/, so a full Logs/ cannot lose it): a run that started is then
    known even when the keeper could write nothing about it."""
    line = f'echo "$WATCHKEEPER_RUN_ID $WATCHKEEPER_JOB" >> {seen}; {script}'
    return json.dumps(["sh", "-c", line, MARK])


def _keeper_limits() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = KEEPER_FDS if hard == resource.RLIM_INFINITY else min(KEEPER_FDS, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@dataclass
class Daemon:
    """One `watchkeeper --daemon` on `vault`, its stdout and stderr appended to `output`."""

    vault: Path
    output: Path
    process: subprocess.Popen[bytes]
    started: ClassVar[list[Daemon]] = []
    """Every one this process started, so none outlives a phase that failed."""

    @classmethod
    def start(cls, vault: Path, output: Path) -> Daemon:
        with output.open("ab") as out:
            out.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            process = subprocess.Popen(
                [str(CLI), "--daemon", "--vault", str(vault)],
                env=daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_keeper_limits,
            )
        daemon = cls(vault, output, process)
        cls.started.append(daemon)
        return daemon

    @classmethod
    def kill_all(cls) -> None:
        """Kill every keeper still running and what its runs left."""
        for daemon in cls.started:
            if daemon.alive():
                daemon.kill()
        for vault in {daemon.vault for daemon in cls.started}:
            end_processes(run_processes(vault))

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def serving(self) -> bool:
        record = lock_record(self.vault)
        return record.get("pid") == self.pid and "socket" in record

    def wait_serving(self, timeout: float = 60.0) -> bool:
        """True once its control socket is noted in the lock; False if it exited first."""
        return wait_until(lambda: self.serving() or not self.alive(), timeout) and self.alive()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait: its exit code, or None if it had to be killed."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def socket_path(self) -> str | None:
        record = lock_record(self.vault)
        path = record.get("socket") if record.get("pid") == self.pid else None
        return path if isinstance(path, str) else None


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def lock_record(vault: Path) -> dict[str, Any]:
    """Read as plain text: probing the lock with flock could make a starting keeper give up."""
    try:
        record = json.loads((vault / "Logs" / ".watchkeeper.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def tracebacks(*paths: Path) -> list[str]:
    """Where a Python traceback was printed: the keeper's output and logs must have none."""
    found = []
    for path in paths:
        for candidate in sorted(path.parent.glob(path.name + "*")):
            with contextlib.suppress(OSError):
                text = candidate.read_text(errors="replace")
                if "Traceback (most recent call last)" in text:
                    at = text.index("Traceback (most recent call last)")
                    found.append(f"{candidate.name}: {text[at : at + 600]}")
    return found


def log_lines_with(log: Path, text: str) -> int:
    """Lines of the keeper log (and its backups) that contain `text`."""
    count = 0
    for candidate in log.parent.glob(log.name + "*"):
        with contextlib.suppress(OSError):
            lines = candidate.read_text(errors="replace").splitlines()
            count += sum(text in line for line in lines)
    return count


# ---- history --------------------------------------------------------------------------


@dataclass
class History:
    """Every history line by run id, in file order, as DESIGN says readers fold them."""

    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bad_lines: int = 0

    @classmethod
    def read(cls, vault: Path) -> History:
        history = cls()
        for segment in sorted((vault / "Logs" / "history").glob("*.jsonl")):
            for raw in segment.read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    history.lines.setdefault(str(line["id"]), []).append(line)
                except (ValueError, KeyError, TypeError):
                    history.bad_lines += 1
        return history

    def finals(self, run_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines.get(run_id, []) if line.get("status") in FINAL]

    def last(self) -> dict[str, dict[str, Any]]:
        return {run_id: lines[-1] for run_id, lines in self.lines.items()}

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.last().values():
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        return dict(sorted(counts.items()))


def seen_runs(path: Path) -> dict[str, str]:
    """Run id -> job, as the job commands noted them when they started."""
    seen: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2:
                seen[parts[0]] = parts[1]
    return seen


def record_problems(history: History, seen: dict[str, str], limit: int = 10) -> list[str]:
    """One final record per started run: none left running, none closed twice, and every
    run a job command saw start has its record."""
    problems = []
    for run_id, lines in history.lines.items():
        finals = [line["status"] for line in lines if line.get("status") in FINAL]
        job = lines[0].get("taskId")
        if not finals:
            problems.append(f"run {run_id} ({job}) has no final record (left running)")
        elif len(finals) > 1:
            problems.append(f"run {run_id} ({job}) has {len(finals)} final records: {finals}")
    for run_id, job in seen.items():
        if run_id not in history.lines:
            problems.append(f"run {run_id} ({job}) started but has no history record at all")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more"]
    return problems


def started(record: dict[str, Any]) -> bool:
    """As core.quota counts: refused runs are skipped; one cancelled while waiting for a
    slot has no exit code."""
    if record["status"] == "skipped":
        return False
    return not (record["status"] == "cancelled" and record.get("exitCode") is None)


def quota_problems(history: History, limits: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """The most starts any 60-minute window held, per scope ('global' or a job), against
    its limit. Manual runs count but are never refused: the phases start none."""
    starts: dict[str, list[float]] = {"global": []}
    for record in history.last().values():
        if not started(record):
            continue
        at = datetime.fromisoformat(record["startedAt"]).timestamp()
        starts["global"].append(at)
        starts.setdefault(record["taskId"], []).append(at)
    most: dict[str, int] = {}
    problems = []
    for scope, limit in limits.items():
        times = sorted(starts.get(scope, []))
        peak, low = 0, 0
        for high, at in enumerate(times):
            while times[low] <= at - 3600:
                low += 1
            peak = max(peak, high - low + 1)
        most[scope] = peak
        if limit and peak > limit:
            problems.append(f"quota {scope}: {peak} starts in one hour, limit {limit}")
    return most, problems


# ---- files ----------------------------------------------------------------------------


def ledger_outcomes(vault: Path) -> dict[tuple[str, str], list[str]]:
    """(job, vault-relative path) -> its outcomes in Logs/files.jsonl, in order."""
    outcomes: dict[tuple[str, str], list[str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for raw in (vault / "Logs" / "files.jsonl").read_bytes().splitlines():
            try:
                entry = json.loads(raw)
                outcomes.setdefault((entry["job"], entry["path"]), []).append(entry["outcome"])
            except (ValueError, KeyError, TypeError):
                continue
    return outcomes


def handed_counts(history: History) -> dict[str, int]:
    """How many runs each file was handed to (retries carry their attempt's files)."""
    counts: dict[str, int] = {}
    for record in history.last().values():
        if record.get("trigger") == "retry":
            continue
        for rel in record.get("files") or []:
            counts[rel] = counts.get(rel, 0) + 1
    return counts


# ---- processes ------------------------------------------------------------------------


def run_processes(vault: Path, keepers: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Live processes started for runs on `vault`: each inherits WATCHKEEPER_VAULT from its
    run's environment (children of children too), and job commands carry MARK in argv.
    Zombies have finished and are left out (they show no environment)."""
    wanted = f"WATCHKEEPER_VAULT={vault}".encode()
    skip = {os.getpid(), *keepers}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted not in environ and MARK.encode() not in argv:
            continue
        env = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        found.append(
            {
                "pid": int(entry.name),
                "run_id": env.get(b"WATCHKEEPER_RUN_ID", b"?").decode(errors="replace"),
                "job": env.get(b"WATCHKEEPER_JOB", b"?").decode(errors="replace"),
                "argv": b" ".join(argv).decode(errors="replace")[:120],
            }
        )
    return found


def end_processes(found: list[dict[str, Any]]) -> None:
    """Leftovers a failed phase found: end them so that the next phase starts clean."""
    for process in found:
        with contextlib.suppress(OSError):
            os.kill(process["pid"], signal.SIGKILL)


# ---- control socket -------------------------------------------------------------------


def ask(path: str, request: bytes, timeout: float = 5.0) -> dict[str, Any] | None:
    """Send one line on a fresh connection; the answer, or None if none came in time."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(path)
            client.sendall(request)
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def status_ok(path: str | None, timeout: float = 5.0) -> bool:
    if path is None:
        return False
    answer = ask(path, b'{"op":"status"}\n', timeout)
    return bool(answer and answer.get("ok"))


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)
