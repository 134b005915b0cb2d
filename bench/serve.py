"""`watchkeeper serve` under load; prints one JSON line.

    .venv/bin/python bench/serve.py [--clients 100] [--rate 200] [--window 5] [--paints 3]

fanout: a real keeper daemon and a real `watchkeeper serve`; a job prints `rate` lines a
second, each its own wall-clock time, and `clients` SSE clients (?kinds=log_line, in this
process) note when each line reaches them: delay = received - printed, so it covers the
child's pipe, the keeper, its control socket, serve's hub and HTTP (target p99 < 50 ms).

first_paint: headless Chromium (tests/browser_kit.py) logged in with a token; from asking
for `/` to the page's terminal showing the attached console's header (ATTACHED): the
page, textual.js, the WebSocket, a fresh `watchkeeper attach` process and its first frame.

stalled: a keeper in this process (as bench/notify_lateness.py) fires `tick` (/bin/true
every 100 ms) while `flood` prints ~5 MB a second, with `watchkeeper serve` on its
socket; lateness = tick's child exists minus its slot's due time. `baseline` has one SSE
client reading; `stalled` adds five raw clients with 4 KB receive buffers that never
read (dropped after --sse-stall 1 s, then they connect again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench_kit import SlotLateness, ms, stop

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "watchkeeper"
TICK = 0.1


def cli(*args: str) -> str:
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"watchkeeper {' '.join(args)}: exit {done.returncode} {done.stderr}")
    return done.stdout.strip()


def start_serve(vault: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [str(CLI), "serve", "--vault", str(vault), "--bind", "127.0.0.1:0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving http://"):
        raise SystemExit(f"serve did not start: {line!r}")
    return process, line.split()[1]


def start_daemon(vault: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(CLI), "--daemon", "--vault", str(vault)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    lock = vault / "Logs" / ".watchkeeper.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if "socket" in json.loads(lock.read_text() or "{}"):
                return process
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise SystemExit("the keeper did not start")


# ---- fan-out ------------------------------------------------------------------------


def emitter(rate: int, count: int) -> list[str]:
    code = (
        "import sys,time\n"
        f"start=time.monotonic()\nfor n in range({count}):\n"
        f"    time.sleep(max(0, start + n / {rate} - time.monotonic()))\n"
        "    print(repr(time.time()), flush=True)\n"
    )
    return [sys.executable, "-c", code]


class SseClient(asyncio.Protocol):
    """A bare SSE reader: the HTTP request written by hand, each read's arrival time noted
    once, then its `data:` lines parsed. An HTTP client library's per-line machinery
    costs more CPU than the server's fan-out, and on a small box that CPU is taken from
    the server being measured."""

    def __init__(self, request: bytes, count: int, delays: list[float]) -> None:
        self.request, self.count, self.delays = request, count, delays
        self.tail = b""
        self.seen = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        if not self.connected.done():
            self.connected.set_result(None)
        lines = (self.tail + data).split(b"\n")
        self.tail = lines.pop()
        for line in lines:
            if not line.startswith(b"data: ") or b'"source":"emit"' not in line:
                continue
            self.delays.append(received - float(json.loads(line[6:])["line"]))
            self.seen += 1
            if self.seen == self.count and not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the stream"))


async def fanout_clients(url: str, token: str, clients: int, count: int) -> None:
    """One client process's share: says `ready` once its clients are all connected, then
    prints their delays (seconds, JSON) and its CPU time once each has `count` lines."""
    parts = urlsplit(url)
    request = (
        f"GET /events?kinds=log_line HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    readers: list[SseClient] = []
    for _ in range(clients):
        reader = SseClient(request, count, delays)
        await loop.create_connection(lambda r=reader: r, parts.hostname, parts.port)
        readers.append(reader)
    async with asyncio.timeout(60):
        await asyncio.gather(*(reader.connected for reader in readers))
    cpu = time.process_time()
    print("ready", flush=True)
    async with asyncio.timeout(120):
        await asyncio.gather(*(reader.done for reader in readers))
    print(json.dumps({"delays": delays, "cpu_s": time.process_time() - cpu}), flush=True)


def fanout(
    scratch: Path, clients: int, rate: int, window: float, processes: int, run: int = 0
) -> dict[str, Any]:
    """`clients` SSE clients spread over `processes` processes, so that on a small box the
    clients' own reading and parsing does not sit in one interpreter's queue: what is
    measured is the server's fan-out."""
    count = int(rate * window)
    vault = scratch / f"fanout-{run}"
    (vault / "Logs").mkdir(parents=True)
    (vault / "watchkeeper.toml").write_text(
        f"[jobs.emit]\ncommand = {json.dumps(emitter(rate, count))}\n"
    )
    keeper = start_daemon(vault)
    server = None
    workers: list[subprocess.Popen[str]] = []
    delays: list[float] = []
    clients_cpu = 0.0
    try:
        token = cli("token", "add", "bench", "--role", "read", "--vault", str(vault))
        server, url = start_serve(vault)
        shares = [clients // processes + (n < clients % processes) for n in range(processes)]
        for share in (share for share in shares if share):
            argv = [sys.executable, __file__, "--fanout-clients", url, token, str(share)]
            argv.append(str(count))
            workers.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit("a fan-out client process did not connect")
        serve_cpu = cpu_seconds(server.pid)
        cli("run", "emit", "--vault", str(vault))
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            share = json.loads(out)
            delays.extend(share["delays"])
            clients_cpu += share["cpu_s"]
        serve_cpu = cpu_seconds(server.pid) - serve_cpu
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        if server is not None:
            stop(server)
        stop(keeper)
    return {
        "received": len(delays),
        "p50_ms": ms(delays, 0.5),
        "p99_ms": ms(delays, 0.99),
        "max_ms": ms(delays, 1.0),
        "serve_cpu_s": round(serve_cpu, 2),
        "clients_cpu_s": round(clients_cpu, 2),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fanouts(
    scratch: Path, clients: int, rate: int, window: float, processes: int, runs: int
) -> dict[str, Any]:
    """Several runs and their medians (one run on a shared box says little)."""
    each = [fanout(scratch, clients, rate, window, processes, run) for run in range(runs)]

    def median(key: str) -> float | None:
        values = [run[key] for run in each if run[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "clients": clients,
        "client_processes": processes,
        "rate_per_s": rate,
        "events_each": int(rate * window),
        "runs": each,
        "median_p50_ms": median("p50_ms"),
        "median_p99_ms": median("p99_ms"),
        "median_serve_cpu_s": median("serve_cpu_s"),
        "median_clients_cpu_s": median("clients_cpu_s"),
    }


# ---- first paint ----------------------------------------------------------------------


def first_paint(scratch: Path, paints: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser_kit import missing, screen, start_browser

    if missing() is not None:
        return {"skipped": missing()}
    vault = scratch / "paint"
    (vault / "Logs").mkdir(parents=True)
    (vault / "watchkeeper.toml").write_text('[jobs.hello]\ncommand = ["true"]\n')
    keeper = start_daemon(vault)
    server = driver = None
    times: list[float] = []
    try:
        token = cli("token", "add", "bench", "--role", "operate", "--vault", str(vault))
        server, url = start_serve(vault)
        driver = start_browser(scratch / "profile")
        driver.get(f"{url}/login?token={token}")  # the cookie; this first load warms caches
        deadline = time.monotonic() + 60
        while "ATTACHED" not in screen(driver) and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(paints):
            driver.get("about:blank")
            began = time.monotonic()
            driver.get(f"{url}/")
            while "ATTACHED" not in screen(driver):
                if time.monotonic() - began > 60:
                    raise SystemExit("no first frame within 60 s")
                time.sleep(0.01)
            times.append(time.monotonic() - began)
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            stop(server)
        stop(keeper)
    return {
        "paints": [round(value * 1000) for value in times],
        "median_ms": round(statistics.median(times) * 1000) if times else None,
    }


# ---- fire lateness beside a stalled client -----------------------------------------------


FLOOD = (
    "import sys\nline = 'x' * 99 + '\\n'\n"
    "while True:\n    sys.stdout.write(line * 5000)\n    sys.stdout.flush()\n"
    "    __import__('time').sleep(0.1)\n"
)


def stall_forever(url: str, token: str, stop_at: float) -> None:
    """Raw SSE clients that never read; each connects again once the server drops it."""
    parts = urlsplit(url)
    held: list[socket.socket] = []
    while time.monotonic() < stop_at:
        while len(held) < 5:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
            sock.sendall(
                f"GET /events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            held.append(sock)
        time.sleep(0.5)
        for sock in list(held):
            try:
                sock.setblocking(False)
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                held.remove(sock)
                sock.close()
    for sock in held:
        sock.close()


async def lateness_case(scratch: Path, stalled: bool, window: float) -> dict[str, Any]:
    import threading

    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.control_server import start_control
    from watchkeeper.core.keeper import Keeper
    from watchkeeper.core.lock import acquire

    vault = scratch / ("stalled" if stalled else "baseline")
    (vault / "Logs").mkdir(parents=True)
    (vault / CONFIG_NAME).write_text(
        '[keeper]\nlog_max_size = "1GB"\n\n'
        f'[jobs.tick]\ncommand = ["/bin/true"]\nevery = "{TICK * 1000:g}ms"\n\n'
        f"[jobs.flood]\ncommand = {json.dumps([sys.executable, '-c', FLOOD])}\n"
        f'timeout = "{window + 30:g}s"\n'
    )
    # The lock, as a daemon holds it: the CLI and serve find the socket through it.
    keeper = Keeper(load_config(vault / CONFIG_NAME), acquire(vault))
    await keeper.start()
    control = await start_control(keeper)
    tick = SlotLateness(keeper)
    serving = asyncio.create_task(keeper.serve())
    server = None
    try:
        lock = vault / "Logs" / ".watchkeeper.lock"
        while '"socket"' not in lock.read_text():
            await asyncio.sleep(0.05)
        token = await asyncio.to_thread(
            cli, "token", "add", "bench", "--role", "operate", "--vault", str(vault)
        )
        server, url = await asyncio.to_thread(start_serve, vault, "--sse-stall", "1")
        reader = subprocess.Popen(
            ["curl", "-sN", "-H", f"Authorization: Bearer {token}", f"{url}/events"],
            stdout=subprocess.DEVNULL,
        )
        await asyncio.to_thread(cli, "run", "flood", "--vault", str(vault))
        stalling = None
        if stalled:
            stop_at = time.monotonic() + window + 2
            stalling = threading.Thread(target=stall_forever, args=(url, token, stop_at))
            stalling.start()
        await asyncio.sleep(1.0)
        tick.measuring = True
        began = time.monotonic()
        await asyncio.sleep(window)
        tick.measuring = False
        elapsed = time.monotonic() - began
        metrics = await asyncio.to_thread(
            subprocess.run,
            ["curl", "-s", "-H", f"Authorization: Bearer {token}", f"{url}/metrics"],
            capture_output=True,
            text=True,
        )
        dropped = next(
            (
                float(line.split()[-1])
                for line in metrics.stdout.splitlines()
                if line.startswith("watchkeeper_serve_sse_dropped_total ")
            ),
            None,
        )
        if stalling is not None:
            await asyncio.to_thread(stalling.join)
        reader.terminate()
        reader.wait()
    finally:
        if server is not None:
            await asyncio.to_thread(stop, server)
        if control is not None:
            await control.close()
        await keeper.stop(grace=5.0)
        await serving
        if keeper.lock is not None:
            keeper.lock.release()
    return {
        "tick_runs": len(tick.late),
        "tick_expected": round(elapsed / TICK),
        "p50_ms": ms(tick.late, 0.5, 2),
        "p99_ms": ms(tick.late, 0.99, 2),
        "max_ms": ms(tick.late, 1.0, 2),
        "sse_dropped": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200, help="events a second")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--paints", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="fan-out runs (medians quoted)")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--parts", default="fanout,paint,lateness", help="which measurements, comma separated"
    )
    parser.add_argument("--fanout-clients", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fanout_clients:
        url, token, clients, count = args.fanout_clients
        asyncio.run(fanout_clients(url, token, int(clients), int(count)))
        return
    parts = set(args.parts.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="wk-bench-serve-"))
    env_vault = os.environ.pop("WATCHKEEPER_VAULT", None)
    try:
        result: dict[str, Any] = {"bench": "serve", "cpus": os.cpu_count()}
        if "fanout" in parts:
            result["fanout"] = fanouts(
                scratch, args.clients, args.rate, args.window, args.client_processes, args.runs
            )
        if "paint" in parts:
            result["first_paint"] = first_paint(scratch, args.paints)
        if "lateness" in parts:
            result["lateness"] = {
                "baseline": asyncio.run(lateness_case(scratch, False, args.window)),
                "stalled": asyncio.run(lateness_case(scratch, True, args.window)),
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if env_vault is not None:
            os.environ["WATCHKEEPER_VAULT"] = env_vault
    print(json.dumps(result))


if __name__ == "__main__":
    main()
