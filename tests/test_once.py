"""`--once --dry-run` lists exactly what `--once` then runs: the real CLI, real runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from conftest import final_records, run_cli

from watchkeeper.core.state import RuntimeState, save_state

CHAINS = """
[jobs.a]
command = ["true"]
every = "1h"
[jobs.b]
command = ["true"]
after = ["a"]
[jobs.f]
command = ["true"]
on_files = ["Inbox/*.md"]
[jobs.c]
command = ["true"]
after = ["f"]
[jobs.d]
command = ["true"]
after = ["a", "f"]
[jobs.p]
command = ["true"]
every = "1h"
[jobs.q]
command = ["true"]
after = ["p"]
[jobs.off]
command = ["true"]
after = ["a"]
enabled = false
"""


def planned(vault: Path) -> list[str]:
    """The jobs the dry run says will run."""
    result = run_cli("--once", "--dry-run", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    names = []
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"would run (\S+): .*", line):
            if "left out" not in line:
                names.append(match[1])
        elif match := re.fullmatch(r"would hand \d+ waiting file\(s\) to (\S+)", line):
            names.append(match[1])
        elif line.startswith("then, "):
            names += line.split(": ", 1)[1].split(", ")
        else:
            raise AssertionError(f"unexpected dry-run line {line!r}")
    return sorted(names)


def ran(vault: Path, before: set[str]) -> list[str]:
    """The jobs that --once ran (one record each, none left running)."""
    records = [r for r in final_records(vault).values() if r["id"] not in before]
    assert all(record["status"] == "success" for record in records), records
    return sorted(record["taskId"] for record in records)


def test_the_dry_run_lists_what_once_runs(make_vault, tmp_path: Path) -> None:
    vault = make_vault(CHAINS)
    save_state(vault, RuntimeState(paused_jobs={"p"}))

    # No file waits: f does not run, so neither does the job after it alone (c), nor the
    # join of a and f (d); p is paused, so q is never reached.
    expected = planned(vault)
    assert expected == ["a", "b"]
    result = run_cli("--once", "--vault", str(vault))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(vault, set()) == expected

    # A file waits for f: its run starts c (a wave of its own, so still no d).
    staged = tmp_path / "note.md"
    staged.write_text("work\n")
    os.rename(staged, vault / "Inbox" / "note.md")
    expected = planned(vault)
    assert expected == ["a", "b", "c", "f"]
    before = set(final_records(vault))
    result = run_cli("--once", "--vault", str(vault))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(vault, before) == expected

    # Handed over once: the next dry run has no file for f.
    assert planned(vault) == ["a", "b"]
