"""DESIGN's masking promise end to end: a real `watchkeeper --daemon` runs a job that
prints nine kinds of secret, and none of them is found in any place the keeper writes or
answers: job log, keeper log, history, ledger, Dashboard.md, metrics.prom, the daemon's
own output, `--status --json`, `jobs --json`, `history --json`, `logs`, `run --wait
--follow`, the control socket's answers and its event stream."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import socket
import sys
import textwrap
import threading
from pathlib import Path

from conftest import Daemons, final_records, keeper_log, lock_record, run_cli, wait_for

from watchkeeper.core import control_client as control

LEAK = """\
import os, sys, time
env = os.environ
print("plain", env["PLAIN_TOKEN"], flush=True)
print("declared", env["DEPLOY_CRED"], flush=True)
for line in env["PEM_KEY"].splitlines():
    print("pem", line, flush=True)
print("envfile", env["DB_PASSWORD"], flush=True)
print("argv", sys.argv[1], flush=True)
print("stderr", env["STDERR_PASSWORD"], file=sys.stderr, flush=True)
# 64 KiB with no newline, ending inside a secret whose rest comes a moment later.
cut, out = env["CUT_SECRET"], sys.stdout.buffer
out.write(b"x" * (65536 - 10) + cut[:10].encode())
out.flush()
time.sleep(0.2)
out.write(cut[10:].encode() + b" after the cut\\n")
out.flush()
sys.exit(3)
"""


def secret(kind: str) -> str:
    return f"{kind}-{os.urandom(12).hex()}"


def pem() -> str:
    body = base64.b64encode(os.urandom(120)).decode()
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN PRIVATE KEY-----", *lines, "-----END PRIVATE KEY-----"])


def giveaways(value: str) -> list[str]:
    """Pieces of a secret (10 characters of its random part) that would give it away."""
    random = [line for line in value.splitlines() if "-----" not in line]
    text = "\n".join(random)
    if "-" in text and "\n" not in text:
        text = text.split("-", 1)[1]
    pieces = []
    for line in text.splitlines():
        pieces += [line[index : index + 10] for index in range(len(line) - 9)]
    return pieces


class EventTap:
    """A raw subscriber keeping every byte the keeper streams, until it closes."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.fsencode(path))
        self.sock.sendall(b'{"op": "subscribe"}\n')
        self.received = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := self.sock.recv(65536):
            self.received += chunk


def test_nine_kinds_of_secret_reach_no_output_file_answer_or_event(
    daemons: Daemons, make_vault, tmp_path: Path
) -> None:
    secrets = {
        "PLAIN_TOKEN": secret("plain"),
        "DEPLOY_CRED": secret("declared"),  # named in secret_env, not by the name rule
        "PEM_KEY": pem(),
        "CUT_SECRET": secret("straddle"),
        "ARGV_KEY": secret("argv"),
        "HOOK_SECRET": secret("hook"),
        "STDERR_PASSWORD": secret("stderr"),
    }
    in_env_file, in_bad_line = secret("envfile"), secret("badline")
    python = shlex.quote(sys.executable)
    vault = make_vault(
        f"""
        [jobs.leak]
        command = 'set -x; exec {python} scripts/leak.py "$ARGV_KEY"'
        env_file = ".env"
        secret_env = ["DEPLOY_CRED"]
        on_failure = "echo hook out $HOOK_SECRET; echo hook err $HOOK_SECRET >&2"

        [jobs.broken]
        command = ["true"]
        env_file = ".env.broken"
        """
    )
    (vault / "scripts").mkdir(exist_ok=True)
    (vault / "scripts" / "leak.py").write_text(LEAK)
    (vault / ".env").write_text(f"DB_PASSWORD={in_env_file}\n")
    (vault / ".env.broken").write_text(
        textwrap.dedent(
            f"""\
            GOOD=1
            API_TOKEN: {in_bad_line}
            """
        )
    )
    process = daemons.start(vault, env=secrets)
    tap = EventTap(Path(lock_record(vault)["socket"]))

    places: dict[str, str] = {}
    for job in ("leak", "broken"):
        ran = run_cli("run", job, "--wait", "--follow", "--vault", str(vault))
        places[f"run {job} --wait --follow"] = ran.stdout + ran.stderr
    wait_for(lambda: "on_failure hook of run" in keeper_log(vault), timeout=20)
    for args in (
        ["--status", "--json"],
        ["jobs", "--json"],
        ["history", "--json"],
        ["logs", "leak"],
        ["logs", "broken"],
    ):
        done = run_cli(*args, "--vault", str(vault))
        places[" ".join(args)] = done.stdout + done.stderr
    for op in ("status", "jobs", "history"):
        places[f"control {op}"] = repr(control.request(vault, op))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    tap.thread.join(20)
    places["control events"] = tap.received.decode(errors="replace")
    places["daemon output"] = (tmp_path / "daemon-0.out").read_text()
    files = [path for path in (vault / "Logs").rglob("*") if path.is_file()]
    files.append(vault / "Dashboard.md")
    assert vault / "Logs" / "metrics.prom" in files
    for path in files:
        places[str(path.relative_to(vault))] = path.read_text(errors="replace")

    # The secrets were really printed (masked), so finding none of them means something.
    job_log = places["Logs/jobs/leak.log"]
    pem_lines = len(secrets["PEM_KEY"].splitlines())
    for shown in ("plain ***", "declared ***", "envfile ***", "argv ***", "stderr ***"):
        assert shown in job_log, shown
    assert job_log.count("pem ***") == pem_lines
    assert "*** after the cut" in job_log and "hook out ***" in job_log
    assert "hook err ***" in job_log and "leak.py ***" in job_log  # sh -x shows the argv
    broken = [r for r in final_records(vault).values() if r["taskId"] == "broken"]
    assert len(broken) == 1 and ".env.broken:2: expected KEY=VALUE" in broken[0]["error"]
    assert "envfile ***" in places["run leak --wait --follow"]
    assert tap.received.count(b'"event":"run_finished"') >= 2

    searched = [*secrets.items(), ("env_file", in_env_file), ("bad line", in_bad_line)]
    assert all(len(giveaways(value)) >= 10 for _, value in searched)
    leaks = [
        (name, place)
        for name, value in searched
        for place, text in places.items()
        if any(piece in text for piece in giveaways(value))
    ]
    assert leaks == []
