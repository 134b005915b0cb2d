"""Phase socket: abuse of the control socket while a fresh `status` is asked every 100 ms.

Malformed lines (garbage bytes, JSON that is not a request, wrong types, deep nesting),
oversized requests, hundreds of idle and half-open clients held open, a crowd connecting
at once, clients that send and shut their side, and a subscriber that never reads. Every
malformed line must get an error answer, every probe an answer within 5 s, and the keeper
must stay up, print no traceback and stop cleanly.
"""

from __future__ import annotations

import json
import random
import select
import selectors
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from chaos_kit import Daemon, ask, job_command, percentile, tracebacks

from watchkeeper.core.vault import ensure_layout

PROBE_EVERY = 0.1
PROBE_TIMEOUT = 5.0


class Prober(threading.Thread):
    """Asks `status` every PROBE_EVERY s as the product's client does: on a fresh
    connection, asking again on another one when the keeper closed it to make room
    (`"closed": "idle"`). A probe fails when no answer came within PROBE_TIMEOUT."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.asked_again = 0

    def run(self) -> None:
        while not self.stop.wait(PROBE_EVERY):
            began = time.monotonic()
            while True:
                left = PROBE_TIMEOUT - (time.monotonic() - began)
                answer = ask(self.path, b'{"op":"status"}\n', max(left, 0.01))
                if not (answer and answer.get("closed") == "idle") or left <= 0:
                    break
                self.asked_again += 1
            elapsed = time.monotonic() - began
            if answer and answer.get("ok") and elapsed <= PROBE_TIMEOUT:
                self.latencies.append(elapsed * 1000)
            else:
                self.failures.append(
                    f"{time.strftime('%H:%M:%S')} {answer!r} after {elapsed:.1f} s"
                )


def malformed_lines(rng: random.Random, count: int) -> list[bytes]:
    """Lines that are not valid requests. None is a valid state-changing one: an
    accidental `pause` would change what the probes see."""
    templates: list[bytes] = [
        b"not json",
        b"{",
        b"[]",
        b"null",
        b"42",
        b'"status"',
        b'{"op": 5}',
        b'{"op": "nope"}',
        b'{"op": null}',
        b'{"nop": "status"}',
        b'{"op": "history", "limit": "x"}',
        b'{"op": "history", "limit": -1}',
        b'{"op": "history", "limit": 1e999}',
        b'{"op": "history", "since": "yesterday"}',
        b'{"op": "history", "offset": 99999999999999999999999}',
        b'{"op": "run", "job": "../../etc/passwd"}',
        b'{"op": "run", "job": 5}',
        b'{"op": "pause", "job": ["a"]}',
        b'{"op": "pause", "job": "no-such-job"}',
        b'{"op": "resume", "job": {}}',
        b'{"op": "cancel", "run_id": null}',
        b'{"op": "cancel"}',
        b'{"op": "subscribe", "kinds": "all"}',
        b'{"op": "subscribe", "kinds": ["nope"]}',
        b'{"op": "status"',
        b'{"op": "\xff\xfe"}',
        b'{"op": "\\ud800"}',
        b"\x00\x00\x00",
        # Deep nesting within the 64 KiB limit (longer lines are the oversized case).
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ]
    lines = []
    for _ in range(count):
        if rng.random() < 0.4:
            lines.append(
                bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))).replace(b"\n", b" ")
            )
        else:
            lines.append(rng.choice(templates))
    return lines


def send_malformed(path: str, lines: list[bytes]) -> dict[str, Any]:
    """The lines one after another on a connection; a line the keeper answered and then
    hung up after goes again on a fresh one (it closes a connection after an error it
    cannot read past). A line counts as unanswered only if a fresh connection got nothing."""
    counts = {"sent": 0, "error_answers": 0, "ok_answers": 0, "no_answer": 0}
    unanswered: list[str] = []
    client: socket.socket | None = None
    reader = None
    for line in lines:
        counts["sent"] += 1
        for fresh in (client is None, True):
            if fresh or client is None:
                if client is not None:
                    client.close()
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.settimeout(PROBE_TIMEOUT)
                client.connect(path)
                reader = client.makefile("rb")
            assert reader is not None
            try:
                client.sendall(line + b"\n")
                answer = json.loads(reader.readline() or b"null")
            except (OSError, ValueError):
                answer = None
            if isinstance(answer, dict):
                break
            client.close()
            client = None
            if fresh:
                break
        if isinstance(answer, dict) and answer.get("ok") is False and answer.get("error"):
            counts["error_answers"] += 1
        elif isinstance(answer, dict) and answer.get("ok"):
            counts["ok_answers"] += 1
        else:
            counts["no_answer"] += 1
            if len(unanswered) < 3:
                unanswered.append(repr(line[:60]))
    if client is not None:
        client.close()
    return {**counts, "unanswered_examples": unanswered}


def oversized(path: str) -> dict[str, int]:
    """Lines past the 64 KiB limit: each must get an error answer (or, once the keeper
    has answered, a closed connection), never a stalled or dead keeper."""
    counts = {"sent": 0, "error_answers": 0, "no_answer": 0}
    cases = [b'{"op":"status","pad":"' + b"x" * 100_000 + b'"}\n'] * 20
    cases += [b"y" * 1_000_000] * 5  # no newline at all, then the sending side shut
    cases += [b"z" * 10_000_000] * 2
    for payload in cases:
        counts["sent"] += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(PROBE_TIMEOUT)
            answer = b""
            try:
                client.connect(path)
                for at in range(0, len(payload), 65536):
                    client.sendall(payload[at : at + 65536])
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the keeper may answer and hang up before taking it all
            try:
                while not answer.endswith(b"\n"):
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except OSError:
                pass
        try:
            parsed = json.loads(answer.splitlines()[0]) if answer else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("ok") is False:
            counts["error_answers"] += 1
        else:
            counts["no_answer"] += 1
    return counts


def hold(path: str, count: int, first: bytes, seconds: float) -> dict[str, int]:
    """`count` clients that send `first` (nothing, or half a line) and then wait; how many
    the keeper closed (or answered) while they were held."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(PROBE_TIMEOUT)
        try:
            client.connect(path)
            if first:
                client.sendall(first)
        except OSError:
            client.close()
            continue
        client.setblocking(False)
        clients.append(client)
    time.sleep(seconds)
    closed = 0
    for client in clients:
        try:
            closed += client.recv(65536, socket.MSG_PEEK) is not None
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        client.close()
    return {"held": len(clients), "closed_or_answered_by_keeper": closed}


def crowd(path: str, count: int, within: float = 30.0) -> dict[str, int]:
    """`count` clients connecting at once, each asking `status` and, like the product's
    client, asking again on a fresh connection when the keeper closed theirs to make room
    (`"closed": "idle"`). A clear error answer (too many connections) is an answer; a
    connection closed without one, or no answer in time, is not."""
    selector = selectors.DefaultSelector()
    waiting = count
    buffers: dict[socket.socket, bytes] = {}
    counts = {"clients": count, "answered": 0, "asked_again": 0, "refused": 0, "dropped": 0}
    counts["reset"] = 0  # of the dropped: the connection reset rather than ended
    deadline = time.monotonic() + within
    while (waiting or buffers) and time.monotonic() < deadline:
        while waiting:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(path)
            except BlockingIOError:  # its queue of connections not yet accepted is full
                client.close()
                break
            client.sendall(b'{"op":"status"}\n')
            buffers[client] = b""
            selector.register(client, selectors.EVENT_READ)
            waiting -= 1
        for key, _ in selector.select(timeout=0.05):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                chunk = ready.recv(1 << 20)
            except OSError:
                chunk = b""
                counts["reset"] += 1
            buffers[ready] += chunk
            if chunk and not buffers[ready].endswith(b"\n"):
                continue
            answer = _answer(buffers.pop(ready))
            selector.unregister(ready)
            ready.close()
            if answer is None:
                counts["dropped"] += 1
            elif answer.get("ok") is True:
                counts["answered"] += 1
            elif answer.get("closed") == "idle":
                counts["asked_again"] += 1
                waiting += 1
            else:
                counts["refused"] += 1
    for client in buffers:
        client.close()
    selector.close()
    counts["unanswered"] = waiting + len(buffers)
    return counts


def _answer(line: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _ok(line: bytes) -> bool:
    answer = _answer(line)
    return answer is not None and answer.get("ok") is True


def shut_write(path: str) -> bool:
    """A request, then the sending side shut (`echo ... | socat`): it is still answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(PROBE_TIMEOUT)
        try:
            client.connect(path)
            client.sendall(b'{"op":"status"}\n')
            client.shutdown(socket.SHUT_WR)
            answer = client.makefile("rb").readline()
        except OSError:
            return False
    return _ok(answer)


def stalled_subscriber(path: str, within: float) -> float | None:
    """A subscriber that never reads: how long until the keeper let it go (None: not within
    `within` s). Nothing is read, so the hang-up is seen as the peer's shutdown."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(path)
    client.sendall(b'{"op":"subscribe"}\n')
    began = time.monotonic()
    poller = select.poll()
    poller.register(client, select.POLLRDHUP | select.POLLHUP)
    try:
        while time.monotonic() - began < within:
            if poller.poll(500):
                return round(time.monotonic() - began, 1)
        return None
    finally:
        client.close()


def run(work: Path, quick: bool, rng: random.Random) -> dict[str, Any]:
    vault = work / "socket-vault"
    ensure_layout(vault)
    seen = work / "socket-seen.txt"
    (vault / "watchkeeper.toml").write_text(
        f'[jobs.heartbeat]\ncommand = {job_command(seen, "echo beat")}\nevery = "100ms"\n'
    )
    output = work / "socket-daemon.out"
    daemon = Daemon.start(vault, output)
    if not daemon.wait_serving():
        return {"problems": [f"the keeper did not start: see {output}"]}
    path = daemon.socket_path()
    assert path is not None
    prober = Prober(path)
    prober.start()
    held_for = 8.0 if quick else 20.0
    figures: dict[str, Any] = {}
    figures["malformed"] = send_malformed(path, malformed_lines(rng, 1000 if quick else 10_000))
    figures["oversized"] = oversized(path)
    figures["idle"] = hold(path, 100 if quick else 300, b"", held_for)
    figures["half_open"] = hold(path, 100 if quick else 300, b'{"op":"sta', held_for)
    figures["crowd"] = crowd(path, 200 if quick else 1000)
    figures["shut_write_answered"] = sum(shut_write(path) for _ in range(50))
    figures["stalled_subscriber_dropped_after_s"] = stalled_subscriber(path, 30 if quick else 90)
    prober.stop.set()
    prober.join()
    alive = daemon.alive()
    stop_code = daemon.stop()
    problems = []
    if not alive:
        problems.append(f"the keeper died under socket abuse (exit {daemon.process.poll()})")
    if stop_code != 0:
        problems.append(f"the clean stop after the socket phase exited {stop_code}")
    problems += [f"status probe failed: {failure}" for failure in prober.failures[:10]]
    if len(prober.failures) > 10:
        problems.append(f"... and {len(prober.failures) - 10} more failed probes")
    if figures["malformed"]["no_answer"]:
        problems.append(f"{figures['malformed']['no_answer']} malformed lines got no error answer")
    if figures["oversized"]["no_answer"]:
        problems.append(
            f"{figures['oversized']['no_answer']} oversized requests got no error answer"
        )
    crowded = figures["crowd"]
    if crowded["dropped"] or crowded["unanswered"]:
        problems.append(
            f"crowd: {crowded['dropped']} dropped without an answer, "
            f"{crowded['unanswered']} unanswered in 30 s"
        )
    if figures["stalled_subscriber_dropped_after_s"] is None:
        problems.append("a subscriber that never reads was not let go")
    problems += [
        f"traceback: {found}" for found in tracebacks(output, vault / "Logs" / "watchkeeper.log")
    ]
    latencies = prober.latencies
    return {
        **figures,
        "probes": len(latencies) + len(prober.failures),
        "probe_failures": len(prober.failures),
        "probe_asked_again": prober.asked_again,
        "probe_p50_ms": percentile(latencies, 0.5),
        "probe_p99_ms": percentile(latencies, 0.99),
        "probe_max_ms": round(max(latencies), 1) if latencies else None,
        "probe_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "clean_stop_exit": stop_code,
        "problems": problems,
    }
