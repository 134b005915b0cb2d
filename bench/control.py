"""Control socket: request round trips, event fan-out, fire lateness beside a stalled
subscriber; prints one JSON line.

    .venv/bin/python bench/control.py [--quick]

Each scenario runs a real `watchkeeper --daemon` on a fresh temp vault and talks to it
from this process over the socket, as the CLI and an attached console do.

- status: `status` round trips on one connection (Connection.request) and on a fresh
  connection each (control.request: reads the lock record, connects, asks, closes); then
  on fresh connections again while a crowd of 300 clients sits connected saying nothing
  or half a line (the keeper keeps 64 open, evicting the longest idle): none refused.
- fanout: 10 subscribers (kinds = log_line) read in one thread while a job prints a line
  every 5 ms (200 events/s) holding its sequence number and the wall time it was printed;
  delay = the moment a subscriber's recv() returns the line - that time. Per subscriber:
  lines never received (missed), resync events and being dropped.
- lateness: 100 jobs `every = "1s"` (their slots all fall at the same instant, so each
  second is a burst of 100 spawns). A reading subscriber (kinds = run_started) collects
  `lateness_ms` of scheduled runs over a window, once alone and once while another
  subscriber never reads a byte (replaced by a fresh one each time the keeper drops it, so
  one is always stalling). The keeper's CPU% over each window is from /proc.

The box may be shared: loadavg before and after is in the output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from watchkeeper.core import control_client as control
from watchkeeper.core.control_protocol import ControlError, find_socket
from watchkeeper.core.stats import nearest_rank
from watchkeeper.core.vault import ensure_layout

CLI = Path(sys.executable).parent / "watchkeeper"
TARGETS = {"status_p99_ms": 5.0, "fanout_p99_ms": 50.0}
SUBSCRIBERS = 10
CROWD = 300
EMIT_PERIOD = 0.005  # 200 lines/s
LATENESS_JOBS = 100
WARMUP_S = 2.0  # first slots of a fresh keeper (cold caches, first spawns) are not measured
DROPPED = "control: dropped a subscriber"

# Prints "fanout SEQ WALLTIME" on a fixed 5 ms grid; the time is taken as the line is printed.
EMITTER = """\
import sys, time
count, period = int(sys.argv[1]), float(sys.argv[2])
start = time.monotonic() + 0.2
for seq in range(count):
    wait = start + seq * period - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    sys.stdout.write(f"fanout {seq} {time.time():.6f}\\n")
    sys.stdout.flush()
"""


def percentile(values: list[float], pct: float) -> float:
    return nearest_rank(sorted(values), pct)


def summary(values_ms: list[float]) -> dict[str, Any]:
    if not values_ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 3),
        "p99_ms": round(percentile(values_ms, 99), 3),
        "max_ms": round(max(values_ms), 3),
    }


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escaping is TOML's for ASCII text."""
    return json.dumps(text)


# ---- the daemon --------------------------------------------------------------------------


@dataclass
class Daemon:
    vault: Path
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def lock_record(vault: Path) -> dict[str, Any]:
    # Read as a file, never probed with flock: a probe while the keeper starts could make
    # it believe the vault is taken.
    try:
        record = json.loads((vault / "Logs" / ".watchkeeper.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def start_daemon(scratch: Path, config: str) -> Daemon:
    vault = scratch / "vault"
    ensure_layout(vault)
    (vault / "watchkeeper.toml").write_text(config)
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    with (scratch / "daemon.out").open("w") as out:
        process = subprocess.Popen(
            [str(CLI), "--daemon", "--vault", str(vault)],
            env={**env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 30
    while not (lock_record(vault).get("pid") == process.pid and "socket" in lock_record(vault)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the keeper did not serve: {(scratch / 'daemon.out').read_text()}")
        time.sleep(0.02)
    return Daemon(vault, process)


def with_daemon(config: str, scenario: Callable[[Daemon], dict[str, Any]]) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="wk-bench-control-"))
    daemon = start_daemon(scratch, config)
    try:
        return scenario(daemon)
    finally:
        daemon.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# ---- (a) status round trips --------------------------------------------------------------


def status_round_trips(daemon: Daemon, count: int) -> dict[str, Any]:
    vault = daemon.vault
    one: list[float] = []
    with control.Connection(vault) as connection:
        for _ in range(50):
            connection.request("status")
        for _ in range(count):
            began = time.perf_counter()
            connection.request("status")
            one.append((time.perf_counter() - began) * 1000)
    fresh: list[float] = []
    for index in range(count + 50):
        began = time.perf_counter()
        control.request(vault, "status")
        if index >= 50:
            fresh.append((time.perf_counter() - began) * 1000)
    return {"one_connection": summary(one), "fresh_connections": summary(fresh)}


def crowded_status(daemon: Daemon, count: int) -> dict[str, Any]:
    path, _ = find_socket(daemon.vault)
    crowd: list[socket.socket] = []
    times: list[float] = []
    refused = 0
    try:
        for index in range(CROWD):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            crowd.append(sock)
            sock.connect(os.fsencode(path))
            if index % 2:
                sock.sendall(b'{"op": "sta')
        for _ in range(count):
            began = time.perf_counter()
            try:
                control.request(daemon.vault, "status")
            except ControlError:
                refused += 1
                continue
            times.append((time.perf_counter() - began) * 1000)
    finally:
        for sock in crowd:
            sock.close()
    return {"crowd": CROWD, "refused": refused, **summary(times)}


# ---- raw subscribers ---------------------------------------------------------------------


@dataclass
class Subscriber:
    """A subscription read without core.control's buffered file, so one selector thread can
    serve many and stamp each recv() the moment it returns."""

    sock: socket.socket
    buffer: bytes = b""
    answered: bool = False
    closed: bool = False
    resyncs: int = 0
    seen: set[int] = field(default_factory=set)
    delays_ms: list[float] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, kinds: list[str] | None) -> Subscriber:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.fsencode(path))
        request: dict[str, Any] = {"op": "subscribe"}
        if kinds is not None:
            request["kinds"] = kinds
        sock.sendall(json.dumps(request).encode() + b"\n")
        return cls(sock)

    def take(
        self, data: bytes, received: float, on_event: Callable[[Subscriber, dict, float], None]
    ) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if not self.answered:
                if not message.get("ok"):
                    raise RuntimeError(f"subscribe refused: {message}")
                self.answered = True
                continue
            if message["event"] == "resync":
                self.resyncs += 1
            on_event(self, message, received)


def read_subscribers(
    subscribers: list[Subscriber],
    until: Callable[[], bool],
    on_event: Callable[[Subscriber, dict, float], None],
) -> None:
    with selectors.DefaultSelector() as selector:
        for subscriber in subscribers:
            subscriber.sock.setblocking(False)
            selector.register(subscriber.sock, selectors.EVENT_READ, subscriber)
        while not until() and selector.get_map():
            for key, _ in selector.select(timeout=0.1):
                ready: Subscriber = key.data
                try:
                    data = ready.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                received = time.time()
                if not data:
                    ready.closed = True
                    selector.unregister(ready.sock)
                    continue
                ready.take(data, received, on_event)


# ---- (b) fan-out -------------------------------------------------------------------------


def fanout(daemon: Daemon, seconds: float) -> dict[str, Any]:
    count = int(seconds / EMIT_PERIOD)
    path, _ = find_socket(daemon.vault)
    subscribers = [Subscriber.open(path, ["log_line"]) for _ in range(SUBSCRIBERS)]

    def on_event(subscriber: Subscriber, message: dict, received: float) -> None:
        data = message["data"]
        if message["event"] != "log_line" or data.get("source") != "emit":
            return
        _, seq, sent = data["line"].split()
        subscriber.seen.add(int(seq))
        subscriber.delays_ms.append((received - float(sent)) * 1000)

    finished_at: list[float] = []

    def run_emitter() -> None:
        control.request(daemon.vault, "run", timeout=seconds + 60, job="emit", wait=True)
        finished_at.append(time.monotonic())

    runner = threading.Thread(target=run_emitter)
    runner.start()
    deadline = time.monotonic() + seconds + 60

    def done() -> bool:
        # Every line in everywhere, or the run over for a while (what is missing stays so).
        if all(len(subscriber.seen) == count for subscriber in subscribers):
            return True
        if finished_at:
            return time.monotonic() - finished_at[0] > 2.0
        return time.monotonic() > deadline

    read_subscribers(subscribers, done, on_event)
    runner.join()
    for subscriber in subscribers:
        subscriber.sock.close()
    delays = [delay for subscriber in subscribers for delay in subscriber.delays_ms]
    return {
        "subscribers": SUBSCRIBERS,
        "events_per_s": round(1 / EMIT_PERIOD),
        "lines": count,
        **summary(delays),
        "missed": sum(count - len(subscriber.seen) for subscriber in subscribers),
        "resyncs": sum(subscriber.resyncs for subscriber in subscribers),
        "dropped": sum(subscriber.closed for subscriber in subscribers),
    }


# ---- (c) fire lateness beside a stalled subscriber ---------------------------------------


class Staller:
    """Keeps one never-reading subscriber connected: when the keeper drops it (its log
    says so), a fresh one takes its place."""

    def __init__(self, daemon: Daemon) -> None:
        self.path, _ = find_socket(daemon.vault)
        self.log = daemon.vault / "Logs" / "watchkeeper.log"
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.drops = 0
        self.thread = threading.Thread(target=self._run)

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.fsencode(self.path))
        sock.sendall(b'{"op": "subscribe"}\n')
        self.sockets.append(sock)

    def _run(self) -> None:
        # Only the log's new bytes are read: it grows by a line per start and per end.
        with self.log.open("rb") as log:
            log.seek(0, os.SEEK_END)
            self._connect()
            while not self.stop.wait(0.2):
                drops = log.read().count(DROPPED.encode())
                if drops:
                    self.drops += drops
                    self.sockets[-1].close()
                    self._connect()

    def __enter__(self) -> Staller:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def lateness_window(daemon: Daemon, window: float) -> dict[str, Any]:
    """Lateness of the scheduled runs due in the next `window` seconds; missed = their
    slots that never started (each job's slots are 1 s apart from any due time seen)."""
    path, _ = find_socket(daemon.vault)
    reader = Subscriber.open(path, ["run_started"])
    runs: list[tuple[str, float, float]] = []  # job, due (wall clock), lateness ms

    def on_event(_: Subscriber, message: dict, __: float) -> None:
        data = message["data"]
        if data.get("trigger") == "schedule" and data.get("lateness_ms") is not None:
            # startedAt is stamped just before the spawn that lateness is measured at.
            started = datetime.fromisoformat(data["startedAt"]).timestamp()
            runs.append((data["taskId"], started - data["lateness_ms"] / 1000, data["lateness_ms"]))

    begin, wall = time.monotonic(), time.time()
    cpu0 = daemon.cpu_seconds()
    try:
        read_subscribers([reader], lambda: time.monotonic() > begin + window, on_event)
        cpu_pct = round(100 * (daemon.cpu_seconds() - cpu0) / (time.monotonic() - begin), 1)
        # Slots due near the end start a little later: give them a second.
        read_subscribers([reader], lambda: time.monotonic() > begin + window + 1.0, on_event)
    finally:
        reader.sock.close()
    inside = [run for run in runs if wall <= run[1] < wall + window]
    phases = {job: due % 1.0 for job, due, _ in runs}
    slots = sum(
        math.ceil(wall + window - phase) - math.ceil(wall - phase) for phase in phases.values()
    )
    slots += round(window) * (LATENESS_JOBS - len(phases))  # jobs never seen at all
    return {
        **summary([late for _, _, late in inside]),
        "missed": slots - len(inside),
        "keeper_cpu_pct": cpu_pct,
        "reader_dropped": reader.closed,
    }


def lateness(daemon: Daemon, window: float) -> dict[str, Any]:
    time.sleep(WARMUP_S)
    alone = lateness_window(daemon, window)
    with Staller(daemon) as staller:
        stalled = lateness_window(daemon, window)
    return {
        "jobs": LATENESS_JOBS,
        "window_s": window,
        "without_stalled": alone,
        "with_stalled": {
            **stalled,
            "stalled_subscribers": len(staller.sockets),
            "dropped": staller.drops,
        },
    }


# ---- main --------------------------------------------------------------------------------


def emitter_config(count: int) -> str:
    argv = [sys.executable, "-c", EMITTER, str(count), str(EMIT_PERIOD)]
    return (
        '[keeper]\nlog_max_size = "1GB"\n\n[jobs.emit]\n'
        f"command = [{', '.join(toml_string(arg) for arg in argv)}]\n"
    )


def lateness_config() -> str:
    lines = ["[keeper]", "max_parallel = 1000", 'log_max_size = "1GB"', ""]
    for index in range(LATENESS_JOBS):
        lines += [f"[jobs.j{index:03d}]", 'command = ["/bin/true"]', 'every = "1s"', ""]
    return "\n".join(lines)


def idle_config(jobs: int) -> str:
    return "".join(f'[jobs.idle{index:02d}]\ncommand = ["/bin/true"]\n' for index in range(jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, short windows")
    args = parser.parse_args()
    requests = 300 if args.quick else 2000
    fan_seconds = 3.0 if args.quick else 10.0
    window = 5.0 if args.quick else 20.0

    load_before = os.getloadavg()
    status = with_daemon(
        idle_config(10),
        lambda d: {**status_round_trips(d, requests), "crowded": crowded_status(d, requests)},
    )
    fan = with_daemon(
        emitter_config(int(fan_seconds / EMIT_PERIOD)), lambda d: fanout(d, fan_seconds)
    )
    late = with_daemon(lateness_config(), lambda d: lateness(d, window))
    load_after = os.getloadavg()

    targets = {
        "status_one_connection_p99_lt_5ms": status["one_connection"]["p99_ms"]
        < TARGETS["status_p99_ms"],
        "status_fresh_connections_p99_lt_5ms": status["fresh_connections"]["p99_ms"]
        < TARGETS["status_p99_ms"],
        "status_beside_idle_crowd_none_refused": status["crowded"]["refused"] == 0,
        "fanout_p99_lt_50ms": fan["p99_ms"] is not None
        and fan["p99_ms"] < TARGETS["fanout_p99_ms"],
        "fanout_none_missed_or_dropped": fan["missed"] == 0
        and fan["resyncs"] == 0
        and fan["dropped"] == 0,
    }
    result = {
        "bench": "control",
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(value, 2) for value in load_before],
        "loadavg_after": [round(value, 2) for value in load_after],
        "status": status,
        "fanout": fan,
        "lateness": late,
        "targets": targets,
        "all_targets_met": all(targets.values()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
