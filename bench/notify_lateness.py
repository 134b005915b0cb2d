"""Do notifications delay slots? Prints one JSON line.

    .venv/bin/python bench/notify_lateness.py [--window SECONDS]

A keeper in this process runs `tick` (/bin/true every 100 ms, the job measured) beside
`flap` (/bin/false every 200 ms). In the `slow_webhook` case every failure of `flap` is a
notification (rate_window 0s) to a local webhook that answers only after 5 s, on two
channels; in `baseline` the same jobs notify nobody. Lateness = the moment tick's child
exists minus its slot's due time (as bench/fire_lateness.py measures it). With delivery
off the keeper's loop the two cases are alike; were a send to block the loop, tick's
lateness would be seconds and its slots missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench_kit import SlotLateness, ms

ANSWER_AFTER = 5.0
TICK = 0.1


def slow_server() -> tuple[ThreadingHTTPServer, list[float]]:
    answered: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(ANSWER_AFTER)
            self.send_response(200)
            self.end_headers()
            answered.append(time.monotonic())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, answered


def config(port: int | None) -> str:
    lines = ['[keeper]', 'log_max_size = "1GB"', ""]
    notify = ""
    if port is not None:
        for name in ("slow", "slower"):
            lines += [
                f"[notify.{name}]",
                f'webhook = "http://127.0.0.1:{port}/hook"',
                'rate_window = "0s"',
                "attempts = 1",
                'timeout = "10s"',
                "",
            ]
        notify = 'notify = ["slow", "slower"]'
    lines += [
        "[jobs.tick]", 'command = ["/bin/true"]', f'every = "{TICK * 1000:g}ms"', "",
        "[jobs.flap]", 'command = ["/bin/false"]', 'every = "200ms"', notify, "",
    ]
    return "\n".join(lines)


async def case(port: int | None, window: float) -> dict[str, Any]:
    from watchkeeper.core.config import CONFIG_NAME, load_config
    from watchkeeper.core.keeper import Keeper

    vault = Path(tempfile.mkdtemp(prefix="wk-bench-notify-"))
    try:
        (vault / CONFIG_NAME).write_text(config(port))
        keeper = Keeper(load_config(vault / CONFIG_NAME))
        await keeper.start()
        tick = SlotLateness(keeper)
        serving = asyncio.create_task(keeper.serve())
        await asyncio.sleep(1.0)  # warm-up: the first failures' deliveries are under way
        tick.measuring = True
        began = time.monotonic()
        await asyncio.sleep(window)
        tick.measuring = False
        elapsed = time.monotonic() - began
        stopping = time.monotonic()
        await keeper.stop(grace=5.0)
        await serving
        log = (vault / "Logs" / "watchkeeper.log").read_text()
        return {
            "tick_runs": len(tick.late),
            "tick_expected": round(elapsed / TICK),
            "p50_ms": ms(tick.late, 0.50),
            "p99_ms": ms(tick.late, 0.99),
            "max_ms": ms(tick.late, 1.0),
            "mean_ms": round(statistics.fmean(tick.late) * 1000, 3) if tick.late else None,
            "notify_sent": log.count(" sent to webhook "),
            "notify_given_up": log.count("still sending after"),
            "stop_s": round(time.monotonic() - stopping, 2),
        }
    finally:
        shutil.rmtree(vault, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per case")
    args = parser.parse_args()
    server, answered = slow_server()
    try:
        baseline = asyncio.run(case(None, args.window))
        slow = asyncio.run(case(server.server_address[1], args.window))
    finally:
        server.shutdown()
    print(
        json.dumps(
            {
                "bench": "notify_lateness",
                "window_s": args.window,
                "webhook_answers_after_s": ANSWER_AFTER,
                "baseline": baseline,
                "slow_webhook": {**slow, "webhook_answered": len(answered)},
            }
        )
    )


if __name__ == "__main__":
    main()
