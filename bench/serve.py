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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "watchkeeper"
TICK = 0.1


def ms(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)


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


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


async def fanout_clients(url: str, token: str, clients: int, count: int) -> list[float]:
    import aiohttp

    delays: list[float] = []
    ready = asyncio.Event()
    connected = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal connected
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{url}/events?kinds=log_line", headers=headers) as response:
            connected += 1
            if connected == clients:
                ready.set()
            seen = 0
            async for raw in response.content:
                if not raw.startswith(b"data: "):
                    continue
                data = json.loads(raw[6:])
                if data.get("source") != "emit":
                    continue
                delays.append(time.time() - float(data["line"]))
                seen += 1
                if seen == count:
                    return

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.to_thread(cli, "run", "emit", "--vault", str(VAULT[0]))
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return delays


VAULT: list[Path] = []


def fanout(scratch: Path, clients: int, rate: int, window: float) -> dict[str, Any]:
    count = int(rate * window)
    vault = scratch / "fanout"
    (vault / "Logs").mkdir(parents=True)
    (vault / "watchkeeper.toml").write_text(
        f"[jobs.emit]\ncommand = {json.dumps(emitter(rate, count))}\n"
    )
    VAULT[:] = [vault]
    keeper = start_daemon(vault)
    server = None
    try:
        token = cli("token", "add", "bench", "--role", "read", "--vault", str(vault))
        server, url = start_serve(vault)
        cpu = time.process_time()
        delays = asyncio.run(fanout_clients(url, token, clients, count))
        cpu = time.process_time() - cpu
    finally:
        if server is not None:
            stop(server)
        stop(keeper)
    return {
        "clients": clients,
        "rate_per_s": rate,
        "events_each": count,
        "received": len(delays),
        "p50_ms": ms(delays, 0.5),
        "p99_ms": ms(delays, 0.99),
        "max_ms": ms(delays, 1.0),
        "client_cpu_s": round(cpu, 2),
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
    from watchkeeper.core.runtime import ActiveRun
    from watchkeeper.core.seams import Started

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
    late: list[float] = []
    measuring = False

    def started(active: ActiveRun, run: Started) -> None:
        request = active.request
        if measuring and request.job == "tick" and request.due_mono is not None:
            late.append(run.started_mono - request.due_mono)

    keeper.runs.on_started.append(started)
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
        measuring = True
        began = time.monotonic()
        await asyncio.sleep(window)
        measuring = False
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
        "tick_runs": len(late),
        "tick_expected": round(elapsed / TICK),
        "p50_ms": ms(late, 0.5),
        "p99_ms": ms(late, 0.99),
        "max_ms": ms(late, 1.0),
        "sse_dropped": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200, help="events a second")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--paints", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="wk-bench-serve-"))
    env_vault = os.environ.pop("WATCHKEEPER_VAULT", None)
    try:
        result = {
            "bench": "serve",
            "fanout": fanout(scratch, args.clients, args.rate, args.window),
            "first_paint": first_paint(scratch, args.paints),
            "lateness": {
                "baseline": asyncio.run(lateness_case(scratch, False, args.window)),
                "stalled": asyncio.run(lateness_case(scratch, True, args.window)),
            },
            "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if env_vault is not None:
            os.environ["WATCHKEEPER_VAULT"] = env_vault
    print(json.dumps(result))


if __name__ == "__main__":
    main()
