"""File names as data: names that are not valid UTF-8, hostile names, symlinked folders.

Each test runs a real keeper over a real vault; jobs are argv commands (or a shell string
where the point is that the names reach a shell only as data) and report the raw bytes
they were handed, so nothing is lost to a decode on the way back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    CLI,
    final_records,
    finish,
    lock_record,
    run_cli,
    started_keeper,
    until,
    wait_for,
)
from test_files import file_records, serving, toml

# One JSON line a run: the raw bytes of WATCHKEEPER_FILES and WATCHKEEPER_FILES_JSON
# (hex, so any byte survives), and whether each named file could be opened by the job.
REPORT = (
    "import json, os\n"
    "files = os.environb.get(b'WATCHKEEPER_FILES', b'')\n"
    "listed = os.environb.get(b'WATCHKEEPER_FILES_JSON', b'[]')\n"
    "paths = [os.fsencode(p) for p in json.loads(listed)]\n"
    "vault = os.environb[b'WATCHKEEPER_VAULT']\n"
    "found = [os.path.isfile(os.path.join(vault, p)) for p in paths]\n"
    "line = {'files': files.hex(), 'json': listed.hex(), 'found': found}\n"
    "with open(os.environ['OUT'], 'a') as out: out.write(json.dumps(line) + '\\n')\n"
)


def report_job(out: Path, glob: str = "Inbox/*") -> str:
    return (
        "[jobs.triage]\n"
        f"command = {toml([sys.executable, '-c', REPORT])}\n"
        f"on_files = [{toml(glob)}]\n"
        f"env = {{ OUT = {toml(str(out))} }}\n"
    )


def reports(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines(keepends=True) if "\n" in line]


def handed_bytes(out: Path) -> list[bytes]:
    """Every path handed, as the bytes the job found in WATCHKEEPER_FILES_JSON."""
    return [
        os.fsencode(path) for run in reports(out) for path in json.loads(bytes.fromhex(run["json"]))
    ]


def drop_bytes(folder: Path, name: bytes, staging: Path, content: bytes = b"work\n") -> None:
    """Write a file outside the vault under a raw bytes name, then rename it in whole."""
    staging.mkdir(exist_ok=True)
    source = os.path.join(os.fsencode(staging), name)
    with open(source, "wb") as handle:
        handle.write(content)
    past = time.time() - 10
    os.utime(source, (past, past))
    os.rename(source, os.path.join(os.fsencode(folder), name))


def watching(out: Path, vault: Path, staging: Path) -> None:
    """Return once the keeper's vault watch hands files over: a file dropped after its
    start's scan but before its watch is up would wait for a restart. A probe with new
    content each time is dropped until one is handed (the first one, almost always)."""
    deadline = time.monotonic() + 20
    for attempt in range(1000):
        name = b"probe-%d.txt" % attempt
        drop_bytes(vault / "Inbox", name, staging)
        try:
            wait_for(lambda probe=b"Inbox/" + name: probe in handed_bytes(out), timeout=1)
            return
        except AssertionError:
            assert time.monotonic() < deadline, "the vault watch never handed a file over"


def test_a_name_that_is_not_utf8_is_handed_over_and_stops_nothing(
    make_vault, daemon, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(report_job(out))
    process = daemon(vault)
    staging = tmp_path / "staging"
    odd = b"Inbox/caf\xe9.txt"
    watching(out, vault, staging)
    drop_bytes(vault / "Inbox", b"caf\xe9.txt", staging)
    wait_for(lambda: odd in handed_bytes(out), timeout=20)
    drop_bytes(vault / "Inbox", b"after.txt", staging)
    wait_for(lambda: b"Inbox/after.txt" in handed_bytes(out), timeout=20)

    # The job got the exact bytes, both ways, and could open the file by them. (A probe
    # the watch missed may have come along: the run is the one that names the file.)
    (run,) = [r for r in reports(out) if odd in bytes.fromhex(r["files"]).split(b"\n")]
    listed = json.loads(bytes.fromhex(run["json"]))
    assert bytes.fromhex(run["files"]).split(b"\n") == [os.fsencode(p) for p in listed]
    assert os.fsdecode(odd) in listed
    assert bytes.fromhex(run["json"]).decode("utf-8")  # valid UTF-8 JSON: the byte escaped
    assert all(run["found"])
    assert handed_bytes(out).count(odd) == 1

    # Every record is valid UTF-8 JSON naming the file exactly (json.loads gives it back).
    def outcomes() -> set[tuple[str, str]]:
        ledger = (vault / "Logs" / "files.jsonl").read_bytes().decode("utf-8")
        return {(e["path"], e["outcome"]) for e in map(json.loads, ledger.splitlines())}

    wait_for(lambda: ("Inbox/after.txt", "success") in outcomes())
    assert (os.fsdecode(odd), "success") in outcomes()
    (record,) = [r for r in final_records(vault).values() if os.fsdecode(odd) in r["files"]]
    assert (record["files"], record["status"]) == (listed, "success")

    # The Dashboard keeps being written and shows the name with a replacement character.
    dashboard = vault / "Dashboard.md"
    wait_for(lambda: dashboard.exists() and "caf\ufffd.txt" in dashboard.read_text("utf-8"))
    socket = Path(lock_record(vault)["socket"])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log = (vault / "Logs" / "watchkeeper.log").read_bytes().decode("utf-8")
    # An odd name is no failure: the watch neither died nor was restarted as a failed one.
    assert "Traceback" not in log and " ERROR " not in log
    assert not socket.exists()
    # The CLI's JSON is UTF-8 too (a strict terminal takes it), and names the file exactly.
    history = run_cli("history", "--json", "--vault", str(vault))
    assert history.returncode == 0, history.stderr
    assert listed in [record["files"] for record in json.loads(history.stdout)]


# 40 names a shell, a line-based reader or a terminal would misread.
HOSTILE = [
    "-",
    "-rf.md",
    "--help.md",
    "-n.md",
    "with space.md",
    " leading space.md",
    "trailing space ",
    "new\nline.md",
    "\nstarts with a line break.md",
    "ends with a line break\n",
    "carriage\rreturn.md",
    "tab\there.md",
    "it's.md",
    'say "hi".md',
    '"starts with a quote.md',
    '"quoted"',
    "$(touch pwned).md",
    "`touch pwned`.md",
    "; touch pwned #.md",
    "| touch pwned.md",
    "&& touch pwned.md",
    "${HOME}.md",
    "$HOME.md",
    "*.md",
    "?.md",
    "[a-z].md",
    "{a,b}.md",
    "back\\slash.md",
    "a\\nb.md",
    "%s%n.md",
    "näïve ☃.md",
    "e\u0301 combining.md",
    "\u202eevil\u202dtxt.md",
    "line\u2028separator.md",
    "next\x85line.md",
    "\x1b[31mred\x1b[0m.md",
    "bell\x07.md",
    "snake 🐍.md",
    "l" * 252 + ".md",
    "é" * 125 + ".md",
]


def needs_quotes(rel: str) -> bool:
    """README: a path holding anything str.splitlines() breaks at, or starting with a
    quote, is written in WATCHKEEPER_FILES as a JSON string."""
    return len(f"{rel}.".splitlines()) > 1 or rel.startswith('"')


def read_line(line: bytes) -> str:
    """One path of WATCHKEEPER_FILES, read as the README says to."""
    text = os.fsdecode(line)
    return json.loads(text) if text.startswith('"') else text


def test_the_hostile_names_are_forty_distinct_and_valid() -> None:
    assert len(set(HOSTILE)) == 40
    assert all(len(name.encode()) <= 255 and "/" not in name for name in HOSTILE)


@pytest.mark.parametrize("name", HOSTILE, ids=[ascii(name)[1:-1][:40] for name in HOSTILE])
async def test_a_hostile_name_is_handed_exactly_once_as_data(
    make_vault, tmp_path: Path, name: str
) -> None:
    out, shell_out = tmp_path / "out.jsonl", tmp_path / "shell.out"
    # The second job is a shell string: the names must reach it as data only, in a variable.
    shell = 'printf "%s" "$WATCHKEEPER_FILES" >> "$SHOUT"'
    vault = make_vault(
        report_job(out) + "[jobs.shelled]\n"
        f"command = {toml(shell)}\n"
        'on_files = ["Inbox/*"]\n'
        f"env = {{ SHOUT = {toml(str(shell_out))} }}\n"
    )
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop_bytes(vault / "Inbox", os.fsencode(name), tmp_path / "staging")
    rel = f"Inbox/{name}"
    await until(lambda: reports(out) and shell_out.exists())
    await keeper.wait_idle(10)
    await finish(keeper, task)

    (run,) = reports(out)
    for line in bytes.fromhex(run["files"]), shell_out.read_bytes():
        assert len(f"{os.fsdecode(line)}.".splitlines()) == 1  # one line to any reader
        assert line.startswith(b'"') == needs_quotes(rel)
        assert read_line(line) == rel
    assert json.loads(bytes.fromhex(run["json"])) == [rel]
    assert run["found"] == [True]
    for job in ("triage", "shelled"):
        assert [(r["status"], r["files"]) for r in file_records(vault, job)] == [("success", [rel])]
    assert not list(tmp_path.rglob("pwned"))


async def test_a_folder_symlinked_out_of_the_vault_is_never_followed(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(report_job(out, glob="Inbox/**"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    staging = tmp_path / "staging"
    drop_bytes(outside, b"early.md", staging)  # there at start: the scan must not find it
    (vault / "Inbox" / "linked").symlink_to(outside, target_is_directory=True)
    (vault / "Inbox" / "real").mkdir()
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop_bytes(outside, b"late.md", staging)  # arrives while watched, through the link
    (outside / "written.md").write_text("written in place\n")
    drop_bytes(vault / "Inbox" / "real", b"after.md", staging)
    await until(lambda: b"Inbox/real/after.md" in handed_bytes(out))
    # The written file settles after 1 s: wait it out, so a late hand-over would be seen.
    await until(lambda: not keeper.handover.settling, timeout=10)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert handed_bytes(out) == [b"Inbox/real/after.md"]
    assert "linked" not in (vault / "Logs" / "files.jsonl").read_text()


async def test_a_name_that_is_not_utf8_is_quarantined_with_a_readable_note_and_requeued(
    make_vault, tmp_path: Path
) -> None:
    def config(command: list[str]) -> str:
        return (
            f"[jobs.fragile]\ncommand = {toml(command)}\n"
            'on_files = ["Inbox/*"]\nquarantine_after = 1\nretries = 0\n'
        )

    vault = make_vault(config(["false"]))
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop_bytes(vault / "Inbox", b"caf\xe9.txt", tmp_path / "staging")
    quarantined = vault / os.fsdecode(b"Needs_Action/caf\xe9.txt")
    note = vault / os.fsdecode(b"Needs_Action/caf\xe9.txt.why.md")
    await until(lambda: quarantined.exists() and note.exists())
    text = note.read_bytes().decode("utf-8")  # valid UTF-8 Markdown
    assert "# Quarantined: caf\ufffd.txt" in text and "not valid UTF-8" in text
    assert "`watchkeeper requeue $'Needs_Action/caf\\xe9.txt'`" in text

    (vault / "watchkeeper.toml").write_text(config(["true"]))
    assert keeper.reload("test")
    # The note's command, run by bash as written, names the file exactly.
    command = text.split("`watchkeeper requeue ")[1].split("`")[0]
    result = subprocess.run(
        ["bash", "-c", f"{CLI} requeue {command}"], cwd=vault, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8")  # told in UTF-8, as everything else
    odd = os.fsdecode(b"Inbox/caf\xe9.txt")
    await until(lambda: [r["status"] for r in file_records(vault, "fragile")][-1:] == ["success"])
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert [(r["status"], r["files"]) for r in file_records(vault, "fragile")] == [
        ("failure", [odd]),
        ("success", [odd]),
    ]
    assert (vault / odd).exists() and not note.exists()
