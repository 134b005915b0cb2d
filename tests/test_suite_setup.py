"""The suite holds however it is started: run in the background by a script (SIGINT
ignored, as a shell without job control starts it), a test that presses Ctrl-C on a child
(`logs -f`) still ends it, with and without xdist."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

CTRL_C_TEST = """
import signal, subprocess, sys

SLEEPER = "import time; print(1, flush=True); time.sleep(60)"

def test_ctrl_c_ends_a_child():
    child = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"1\\n"
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) != 0  # KeyboardInterrupt, not the minute of sleep
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_suite_started_with_sigint_ignored_can_still_interrupt_its_children(
    tmp_path: Path, workers: str
) -> None:
    # The conftest imports the PostgreSQL fixtures and the http jobs' endpoint.
    for name in ("conftest.py", "pgserver.py", "http_server.py"):
        shutil.copy(HERE / name, tmp_path / name)
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(CTRL_C_TEST))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert inner.returncode == 0, inner.stdout[-3000:] + inner.stderr[-2000:]
    assert "1 passed" in inner.stdout
