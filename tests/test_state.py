"""Logs/state.toml written by two processes at once (a keeper's pauses, a console's
theme): neither undoes the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from watchkeeper.core.state import load_state, update_state

WRITER = """
import sys
from pathlib import Path
from watchkeeper.core.state import update_state

vault, what, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for index in range(count):
    if what == "theme":
        update_state(vault, lambda state: setattr(state, "theme", f"theme-{index}"))
    else:
        update_state(vault, lambda state: state.paused_jobs.add(f"job-{index}"))
"""


def test_concurrent_writers_keep_each_others_changes(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    count = 200
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(vault), what, str(count)],
            cwd=Path(__file__).parent.parent,
        )
        for what in ("theme", "pauses")
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    state = load_state(vault)
    # Without the lock a read-change-write of one side lands on the other's and drops it.
    assert state.paused_jobs == {f"job-{index}" for index in range(count)}
    assert state.theme == f"theme-{count - 1}"


def test_update_state_returns_what_it_saved(tmp_path: Path) -> None:
    saved = update_state(tmp_path, lambda state: setattr(state, "paused", True))
    assert saved.paused and load_state(tmp_path).paused
