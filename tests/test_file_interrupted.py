"""Files of a run cut off by kill -9 of the keeper: handed again (at-least-once), in a
smaller batch, and each such interruption counts toward quarantine_after.

A real keeper (`watchkeeper --daemon`) is killed with SIGKILL while a run holds its
files, then started again on the same vault.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from conftest import final_records, run_cli, wait_for
from test_files import drop, toml

# Appends the run's files (one JSON array a line), then holds the run while HOLD exists.
HOLDING = (
    "import json, os, time\n"
    "files = json.loads(os.environ['WATCHKEEPER_FILES_JSON'])\n"
    "with open(os.environ['OUT'], 'a') as out: out.write(json.dumps(files) + '\\n')\n"
    "while os.path.exists(os.environ['HOLD']): time.sleep(0.02)\n"
)


def config(out: Path, hold: Path, quarantine_after: int = 3) -> str:
    return f"""
        [keeper]
        kill_grace = "1s"
        [jobs.triage]
        command = {toml([sys.executable, "-c", HOLDING])}
        on_files = ["Inbox/*.md"]
        quarantine_after = {quarantine_after}
        env = {{ OUT = {toml(str(out))}, HOLD = {toml(str(hold))} }}
        """


def batches(out: Path) -> list[list[str]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines(keepends=True) if "\n" in line]


def ledger(vault: Path) -> list[dict]:
    return [json.loads(line) for line in (vault / "Logs" / "files.jsonl").read_text().splitlines()]


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def files_pending(vault: Path) -> int:
    listed = run_cli("jobs", "--json", "--vault", str(vault))
    return next(job for job in json.loads(listed.stdout) if job["name"] == "triage")[
        "files_pending"
    ]


def test_a_batch_cut_off_by_kill_9_goes_again_in_halves(make_vault, daemon, tmp_path: Path) -> None:
    out, hold = tmp_path / "out.jsonl", tmp_path / "hold"
    hold.touch()
    vault = make_vault(config(out, hold))
    v = ("--vault", str(vault))
    first = daemon(vault)
    # Paused, the job gathers all eight; resumed, one run takes them together.
    assert run_cli("pause", "triage", *v).returncode == 0
    names = [f"note-{index}.md" for index in range(8)]
    drop(vault / "Inbox", names, tmp_path / "staging")
    wait_for(lambda: files_pending(vault) == 8, timeout=20)
    assert run_cli("resume", "triage", *v).returncode == 0
    expected = sorted(f"Inbox/{name}" for name in names)
    wait_for(lambda: [sorted(batch) for batch in batches(out)] == [expected], timeout=20)
    (cut,) = [r for r in final_records(vault).values() if r["files"]]
    kill_9(first)

    hold.unlink()
    second = daemon(vault)
    wait_for(lambda: sum(len(batch) for batch in batches(out)) == 16, timeout=30)
    again = batches(out)[1:]
    assert sorted(path for batch in again for path in batch) == expected  # each once more
    assert all(len(batch) <= 4 for batch in again), again
    wait_for(
        lambda: sorted(e["path"] for e in ledger(vault) if e["outcome"] == "success") == expected
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    records = final_records(vault)
    assert records[cut["id"]]["status"] == "interrupted"
    successes = [r["files"] for r in records.values() if r["status"] == "success"]
    assert sorted(path for files in successes for path in files) == expected
    assert all(len(files) <= 4 for files in successes), successes
    interrupted = [e for e in ledger(vault) if e["outcome"] == "interrupted"]
    assert sorted(e["path"] for e in interrupted) == expected
    assert {(e["run"], e["batch"]) for e in interrupted} == {(cut["id"], 4)}


def test_interruptions_count_toward_quarantine_after(make_vault, daemon, tmp_path: Path) -> None:
    out, hold = tmp_path / "out.jsonl", tmp_path / "hold"
    hold.touch()  # every run of it is cut off
    vault = make_vault(config(out, hold, quarantine_after=2))
    drop(vault / "Inbox", ["poison.md"], tmp_path / "staging")  # found by the start's scan
    keeper = daemon(vault)
    wait_for(lambda: len(batches(out)) == 1, timeout=20)
    kill_9(keeper)
    keeper = daemon(vault)  # the first interruption: handed again
    wait_for(lambda: len(batches(out)) == 2, timeout=20)
    kill_9(keeper)

    keeper = daemon(vault)  # the second: quarantined instead
    quarantined = vault / "Needs_Action" / "poison.md"
    note = vault / "Needs_Action" / "poison.md.why.md"
    wait_for(lambda: quarantined.exists() and note.exists(), timeout=20)
    keeper.send_signal(signal.SIGTERM)
    assert keeper.wait(timeout=30) == 0
    assert batches(out) == [["Inbox/poison.md"]] * 2
    assert not (vault / "Inbox" / "poison.md").exists()
    assert sorted(r["status"] for r in final_records(vault).values()) == ["interrupted"] * 2
    assert [e["outcome"] for e in ledger(vault)] == ["interrupted", "interrupted", "quarantined"]
    text = note.read_text()
    assert "Failed or interrupted runs on this file: 2" in text
    assert "interrupted (the keeper stopped while it ran)" in text
    assert "watchkeeper requeue Needs_Action/poison.md" in text
