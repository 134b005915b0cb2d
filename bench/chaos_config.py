"""Phase config: random config variants (chaos_variants) through `watchkeeper validate` and
through live reload of a running keeper.

validate must exit 0 or 2, never with a traceback, never hang. Each reload (SIGHUP) must be
answered (the keeper logs that it reloaded or refused the config), and the keeper must
stay up and keep answering `status`. Afterwards a good config must still reload (by SIGHUP
and by the file changing), its interval job run and its file job take a new file. The
secrets planted in env files must appear nowhere: not in logs, history, the Dashboard, the
keeper's output or validate's.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import chaos_variants as variants
from chaos_kit import (
    CLI,
    MARK,
    Daemon,
    History,
    daemon_env,
    end_processes,
    run_processes,
    status_ok,
    tracebacks,
    wait_until,
)

from watchkeeper.core.vault import ensure_layout

REPLY_WITHIN = 10.0
COMMAND = ["sh", "-c", "true", MARK]


class Events(threading.Thread):
    """Reload outcomes, read off the keeper's own log lines on one subscription:
    "reloaded" or "refused" (a refusal, or a reload that failed), "closed" at the end."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.queue: queue.Queue[str] = queue.Queue()
        self.client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.client.settimeout(10.0)
        self.client.connect(path)
        request = {"op": "subscribe", "kinds": ["log_line"]}
        self.client.sendall(json.dumps(request).encode() + b"\n")
        self.reader = self.client.makefile("rb")
        answer = json.loads(self.reader.readline() or b"{}")
        if not answer.get("ok"):
            raise ConnectionError(f"subscribe refused: {answer}")
        self.client.settimeout(None)
        self.start()

    def run(self) -> None:
        try:
            for raw in self.reader:
                data = json.loads(raw).get("data") or {}
                line = str(data.get("line", "")) if data.get("source") == "keeper" else ""
                if line.startswith("config reloaded"):
                    self.queue.put("reloaded")
                elif line.startswith("config reload"):
                    self.queue.put("refused")
        except (OSError, ValueError):
            pass
        self.queue.put("closed")

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def next(self, timeout: float) -> str | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        self.client.close()


def prepare(vault: Path) -> None:
    ensure_layout(vault)
    (vault / "secret.env").write_text(variants.SECRET_ENV_FILE)
    (vault / "good.env").write_text(variants.GOOD_ENV_FILE)
    (vault / "watchkeeper.toml").write_text(variants.dumps(variants.base(COMMAND)))


def validate_all(folder: Path, texts: list[bytes]) -> dict[str, Any]:
    """Each variant through the real CLI, two at a time."""
    prepare(folder)

    def one(index: int) -> tuple[int, str, float]:
        path = folder / f"variant-{index:05d}.toml"
        path.write_bytes(texts[index])
        began = time.monotonic()
        try:
            done = subprocess.run(
                [str(CLI), "validate", str(path)],
                capture_output=True,
                env=daemon_env(),
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return -1, "hung for 120 s", 120.0
        output = (done.stdout + done.stderr).decode(errors="replace")
        path.unlink()
        return done.returncode, output, time.monotonic() - began

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(texts))))
    problems = []
    codes: dict[str, int] = {}
    for index, (code, output, _) in enumerate(results):
        codes[str(code)] = codes.get(str(code), 0) + 1
        trouble = []
        if code not in (0, 2):
            trouble.append(f"exit {code}")
        if "Traceback" in output:
            trouble.append("a traceback")
        if variants.SECRET in output or variants.ENV_SECRET in output:
            trouble.append("the secret")
        if trouble:
            keep = folder / f"failed-{index:05d}.toml"
            keep.write_bytes(texts[index])
            problems.append(f"validate {keep.name}: {', '.join(trouble)}: {output[-300:]!r}")
    seconds = [elapsed for _, _, elapsed in results]
    return {
        "validated": len(texts),
        "exit_codes": codes,
        "slowest_validate_s": round(max(seconds, default=0.0), 2),
        "problems": problems,
    }


def reload_all(work: Path, texts: list[bytes]) -> dict[str, Any]:
    vault = work / "config-vault"
    prepare(vault)
    config = vault / "watchkeeper.toml"
    output = work / "config-daemon.out"
    problems: list[str] = []
    keepers: list[int] = []
    counts = {"reloaded": 0, "refused": 0, "unanswered": 0, "keeper_restarts": 0}

    def fresh() -> tuple[Daemon, Events]:
        config.write_text(variants.dumps(variants.base(COMMAND)))
        daemon = Daemon.start(vault, output)
        keepers.append(daemon.pid)
        if not daemon.wait_serving():
            raise RuntimeError(f"the config phase's keeper did not start: see {output}")
        path = daemon.socket_path()
        assert path is not None
        return daemon, Events(path)

    def keep(index: int, why: str) -> None:
        kept = work / f"reload-failed-{index:05d}.toml"
        kept.write_bytes(texts[index])
        problems.append(f"reload of {kept.name}: {why}")

    daemon, events = fresh()
    for index, text in enumerate(texts):
        events.drain()
        staged = vault / ".variant.tmp"
        staged.write_bytes(text)
        os.replace(staged, config)
        daemon.process.send_signal(signal.SIGHUP)
        answer = events.next(REPLY_WITHIN)
        if answer in counts:
            counts[answer] += 1
        elif answer != "closed":
            counts["unanswered"] += 1
        trouble = None
        if not daemon.alive():
            trouble = f"the keeper exited {daemon.process.poll()}"
        elif answer in (None, "closed") or (
            index % 10 == 0 and not status_ok(daemon.socket_path())
        ):
            trouble = f"no answer ({answer or 'nothing'} within {REPLY_WITHIN:.0f} s)"
        if trouble:
            keep(index, trouble)
            events.close()
            daemon.kill()
            counts["keeper_restarts"] += 1
            daemon, events = fresh()
    after = _still_working(vault, daemon, events)
    problems += after.pop("problems")
    events.close()
    stop_code = daemon.stop()
    if stop_code != 0:
        problems.append(f"the clean stop after the reloads exited {stop_code}")
    leftovers = run_processes(vault, keepers)
    end_processes(leftovers)
    problems += [f"orphan: {process}" for process in leftovers[:10]]
    problems += [
        f"traceback: {found}" for found in tracebacks(output, vault / "Logs" / "watchkeeper.log")
    ]
    problems += _leaks(vault, output)
    return {
        "reloads": len(texts),
        **counts,
        **after,
        "clean_stop_exit": stop_code,
        "problems": problems,
    }


def _still_working(vault: Path, daemon: Daemon, events: Events) -> dict[str, Any]:
    """After the fuzz: a good config reloads by SIGHUP and by the file changing, and the
    keeper still runs its interval job and hands a new file to a job the reload added."""
    problems = []
    good = variants.base(COMMAND)
    good["jobs"]["probe"] = {"command": COMMAND, "on_files": ["Inbox/probe-*.md"]}
    events.drain()
    (vault / "watchkeeper.toml").write_text(variants.dumps(good))
    daemon.process.send_signal(signal.SIGHUP)
    by_signal = _wait_event(events, "reloaded")
    if not by_signal:
        problems.append("a good config sent with SIGHUP after the fuzz was not reloaded")
    events.drain()
    good["jobs"]["heartbeat"]["description"] = "changed on disk only"
    (vault / "watchkeeper.toml").write_text(variants.dumps(good))
    by_watch = _wait_event(events, "reloaded")
    if not by_watch:
        problems.append("the config watch no longer reloads a changed file")
    beats = len([r for r in History.read(vault).last().values() if r["taskId"] == "heartbeat"])
    (vault / "Inbox" / "probe-after-fuzz.md").write_text("still handed?\n")

    def handed() -> bool:
        return any(
            "Inbox/probe-after-fuzz.md" in (record.get("files") or [])
            for record in History.read(vault).last().values()
            if record["taskId"] == "probe"
        )

    def beating() -> bool:
        records = History.read(vault).last().values()
        return len([r for r in records if r["taskId"] == "heartbeat"]) > beats + 2

    file_ok = wait_until(handed, timeout=15.0, interval=0.2)
    beat_ok = wait_until(beating, timeout=15.0, interval=0.2)
    if not file_ok:
        problems.append("a file dropped after the fuzz was not handed to the job a reload added")
    if not beat_ok:
        problems.append("the interval job no longer runs after the fuzz")
    if not status_ok(daemon.socket_path()):
        problems.append("status not answered after the fuzz")
    return {
        "reload_by_signal_after": by_signal,
        "reload_by_file_after": by_watch,
        "file_handed_after": file_ok,
        "interval_job_runs_after": beat_ok,
        "problems": problems,
    }


def _wait_event(events: Events, wanted: str) -> bool:
    deadline = time.monotonic() + REPLY_WITHIN
    while (left := deadline - time.monotonic()) > 0:
        if events.next(left) == wanted:
            return True
    return False


def _leaks(vault: Path, output: Path) -> list[str]:
    """Files that hold a planted secret in clear."""
    found = []
    places = [output, vault / "Dashboard.md", *(vault / "Logs").rglob("*")]
    for path in places:
        try:
            data = path.read_bytes() if path.is_file() else b""
        except OSError:
            continue
        for secret in (variants.SECRET, variants.ENV_SECRET):
            if secret.encode() in data:
                found.append(f"secret {secret} in clear in {path.name}")
    return found


def run(work: Path, count: int, rng: random.Random) -> dict[str, Any]:
    texts = [variants.variant(rng, COMMAND) for _ in range(count)]
    checked = validate_all(work / "validate-vault", texts)
    reloaded = reload_all(work, texts)
    problems = checked.pop("problems") + reloaded.pop("problems")
    return {"variants": count, **checked, **reloaded, "problems": problems}
