"""The README's control-socket example, as written there, against a real keeper: it
needs nothing but a shell and python3 (no socat)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from conftest import run_cli

README = Path(__file__).resolve().parent.parent / "README.md"
JOBS = '[jobs.ok]\ncommand = ["true"]\n'


def readme_function() -> str:
    """The `wk_ask` shell function as the README defines it."""
    found = re.search(r"^wk_ask\(\) \{.*?\"\$1\"; \}$", README.read_text(), re.M | re.S)
    assert found, "the README no longer defines wk_ask"
    return found.group(0)


def shell(vault: Path, call: str, new_session: bool = False) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    return subprocess.Popen(
        ["sh", "-c", f"{readme_function()}\n{call}"],
        cwd=vault,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def test_the_readme_socket_example_asks_and_subscribes(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    keeper = daemon(vault)
    asked = shell(vault, 'wk_ask \'{"op":"status"}\'')
    out, _ = asked.communicate(timeout=20)
    assert asked.returncode == 0
    answer = json.loads(out)
    assert answer["ok"] is True and answer["status"]["pid"] == keeper.pid
    assert answer["status"]["state"] == "RUNNING"

    subscribe = """wk_ask '{"op":"subscribe","kinds":["run_finished"]}'"""
    stream = shell(vault, subscribe, new_session=True)
    try:
        assert stream.stdout is not None
        assert json.loads(stream.stdout.readline())["ok"] is True  # the snapshot
        assert run_cli("run", "ok", "--vault", str(vault)).returncode == 0
        event = json.loads(stream.stdout.readline())
        assert event["event"] == "run_finished" and event["data"]["taskId"] == "ok"
    finally:
        os.killpg(stream.pid, signal.SIGKILL)  # the shell and its python3
        stream.wait(timeout=10)
