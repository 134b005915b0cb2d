"""on_files triggers end to end: real files, real watchfiles events, real job processes.

Files are "dropped" the way a well-behaved producer delivers them: written elsewhere,
then renamed into the vault whole. A job records what it was handed, both through
WATCHKEEPER_FILES (into $OUT) and through the history record's exact `files` field.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import final_records, finals, finish, run_cli, started_keeper, until

from watchkeeper.core.keeper import Keeper

# Appends one JSON line a run: [[vault-relative path, size in bytes], ...] as the job saw
# them through WATCHKEEPER_FILES.
RECORD = [
    "python3",
    "-c",
    "import os, json\n"
    "vault = os.environ['WATCHKEEPER_VAULT']\n"
    "files = os.environ.get('WATCHKEEPER_FILES', '').split('\\n')\n"
    "sizes = [os.path.getsize(os.path.join(vault, f)) for f in files]\n"
    "open(os.environ['OUT'], 'a').write(json.dumps([list(p) for p in zip(files, sizes)]) + '\\n')",
]


def toml(value: object) -> str:
    """A JSON string or list of strings is also a valid TOML value."""
    return json.dumps(value)


def file_job(name: str, out: Path, *, glob: str = "Inbox/*.md", extra: str = "") -> str:
    return (
        f"[jobs.{name}]\n"
        f"command = {toml(RECORD)}\n"
        f"on_files = [{toml(glob)}]\n"
        f"env = {{ OUT = {toml(str(out))} }}\n"
        f"{extra}\n"
    )


def runs_seen(out: Path) -> list[list[list]]:
    """What each run recorded, in order; a line being written is not read."""
    if not out.exists():
        return []
    return [
        json.loads(line) for line in out.read_text().splitlines(keepends=True) if line[-1:] == "\n"
    ]


def handed(out: Path) -> list[str]:
    return [path for run in runs_seen(out) for path, _ in run]


def drop(folder: Path, names: list[str], staging: Path, content: str = "work\n") -> None:
    """Write each file outside the vault, age it, then rename it in: it arrives whole."""
    staging.mkdir(exist_ok=True)
    past = time.time() - 10
    for name in names:
        source = staging / name
        source.write_text(content)
        os.utime(source, (past, past))
        os.rename(source, folder / name)


def file_records(vault: Path, job: str) -> list[dict]:
    return [record for record in finals(vault, job) if record["files"]]


async def serving(keeper: Keeper) -> asyncio.Task:
    """Serve, and return once the vault watch is seen to report: a file dropped before
    that would arrive unseen (until a restart's scan)."""
    task = asyncio.create_task(keeper.serve())
    events = keeper.bus.subscribe()
    probe = keeper.vault / "Done" / ".probe"
    deadline = time.monotonic() + 15
    try:
        while True:
            probe.write_text(str(time.monotonic()))
            await asyncio.sleep(0.05)
            while (event := events.get_nowait()) is not None:
                if event.kind == "vault_changed":
                    return task
            assert time.monotonic() < deadline, "the vault watch never reported"
    finally:
        events.close()


async def test_a_thousand_files_dropped_at_once_are_each_handed_exactly_once(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("triage", out, extra='overlap = "queue"'))
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    names = [f"note-{index:04}.md" for index in range(1000)]
    drop(vault / "Inbox", names, tmp_path / "staging")
    expected = {f"Inbox/{name}" for name in names}
    await until(lambda: set(handed(out)) >= expected, timeout=40)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    seen = handed(out)
    assert len(seen) == len(set(seen)) == 1000
    assert set(seen) == expected
    records = file_records(vault, "triage")
    assert {record["status"] for record in records} == {"success"}
    assert sorted(path for record in records for path in record["files"]) == sorted(expected)
    assert all(record["trigger"] == "file" for record in records)


async def test_a_file_written_slowly_is_handed_once_after_its_last_chunk(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("triage", out, extra='settle = "1s"'))
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    chunk = "x" * 1000 + "\n"
    with (vault / "Inbox" / "slow.md").open("w") as handle:
        for _ in range(5):
            handle.write(chunk)
            handle.flush()
            await asyncio.sleep(0.3)  # the scenario: a writer that pauses, not a hope
    closed = time.time()
    await until(lambda: handed(out))
    await keeper.wait_idle(10)
    # Nothing of the file is left waiting to settle or to be handed.
    assert not keeper.handover.settler._waiting
    assert not keeper.handover.has_pending("triage")
    await finish(keeper, task)
    assert runs_seen(out) == [[["Inbox/slow.md", 5 * len(chunk)]]]
    (record,) = file_records(vault, "triage")
    assert record["status"] == "success"
    assert datetime.fromisoformat(record["startedAt"]).timestamp() >= closed


async def test_restart_hands_nothing_twice_but_new_and_changed_files(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(
        file_job("triage", out, extra='settle = "200ms"')
        + '[jobs.tick]\ncommand = ["true"]\nevery = "100ms"\n'
    )
    inbox = vault / "Inbox"
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop(inbox, ["kept.md", "changed.md"], tmp_path / "staging")
    await until(lambda: sorted(handed(out)) == ["Inbox/changed.md", "Inbox/kept.md"])
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert {r["status"] for r in file_records(vault, "triage")} == {"success"}

    # While no keeper runs: one file arrives, one changes, one is only touched.
    drop(inbox, ["late.md"], tmp_path / "staging")
    (inbox / "changed.md").write_text("work, revised\n")
    os.utime(inbox / "kept.md")
    ticks_before = {record["id"] for record in finals(vault, "tick")}

    keeper = await started_keeper(vault)
    task = asyncio.create_task(keeper.serve())
    await until(lambda: len({r["id"] for r in finals(vault, "tick")} - ticks_before) >= 2)
    await until(lambda: len(handed(out)) >= 4)
    await keeper.wait_idle(10)
    seen = handed(out)
    assert sorted(seen[2:]) == ["Inbox/changed.md", "Inbox/late.md"]
    assert seen.count("Inbox/kept.md") == 1
    # A change while the keeper watches counts as new too: written in place, it settles.
    (inbox / "kept.md").write_text("work, revised while watched\n")
    await until(lambda: len(handed(out)) >= 5)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert handed(out)[4:] == ["Inbox/kept.md"]
    assert {r["status"] for r in file_records(vault, "triage")} == {"success"}


HOSTILE = [
    "with space.md",
    "it's.md",
    'say "hi".md',
    "$(touch pwned).md",
    "`touch pwned`.md",
    "; rm -rf canary #.md",
    "tab\\tand back\\slash.md",
    "näïve ☃.md",
    "l" * 220 + ".md",
    "-rf.md",
    "new\nline.md",
]


async def test_hostile_names_arrive_intact_and_never_pass_through_a_shell(
    make_vault, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    # A string command runs under /bin/sh -c: the names must reach it as data only.
    command = 'printf "%s\\n" "$WATCHKEEPER_FILES" >> "$OUT"; echo "-- end of run --" >> "$OUT"'
    vault = make_vault(
        f"""
        [jobs.triage]
        command = {toml(command)}
        on_files = ["Inbox/*.md"]
        env = {{ OUT = {toml(str(out))} }}
        """
    )
    canary = vault / "canary"
    canary.mkdir()
    (canary / "alive").touch()
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop(vault / "Inbox", HOSTILE, tmp_path / "staging")
    expected = {f"Inbox/{name}" for name in HOSTILE}

    def handed_names() -> list[str]:
        return [path for record in file_records(vault, "triage") for path in record["files"]]

    await until(lambda: set(handed_names()) == expected)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert sorted(handed_names()) == sorted(expected)  # exact, newline included; once each
    assert {r["status"] for r in file_records(vault, "triage")} == {"success"}
    lines = out.read_text().split("\n")
    for name in HOSTILE:
        if "\n" not in name:
            assert lines.count(f"Inbox/{name}") == 1, name
    assert (canary / "alive").exists()
    assert not [path for path in tmp_path.rglob("*pwned*") if path.name == "pwned"]
    assert not (Path.cwd() / "pwned").exists()


async def test_symlinks_leaving_the_vault_are_never_handed(make_vault, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("triage", out))
    inbox = vault / "Inbox"
    secret = tmp_path / "outside.md"
    secret.write_text("not the vault's business\n")
    past = time.time() - 10
    os.utime(secret, (past, past))
    (inbox / "early-out.md").symlink_to(secret)  # there at start: found by the scan
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    (inbox / "out.md").symlink_to(secret)  # arrives while watching
    inside = vault / "Plans" / "target.md"
    inside.write_text("vault content\n")
    os.utime(inside, (past, past))
    (inbox / "in.md").symlink_to(inside)
    await until(lambda: "Inbox/in.md" in handed(out))
    drop(inbox, ["after.md"], tmp_path / "staging")
    await until(lambda: "Inbox/after.md" in handed(out))
    await keeper.wait_idle(10)
    await finish(keeper, task)
    seen = handed(out)
    assert sorted(seen) == ["Inbox/after.md", "Inbox/in.md"]
    assert ["Inbox/in.md", len("vault content\n")] in [
        entry for run in runs_seen(out) for entry in run
    ]
    assert "Inbox/out.md" not in (vault / "Logs" / "files.jsonl").read_text()


@pytest.mark.parametrize("name", ["bad.md", "it's $(bad).md"])
async def test_a_file_failing_three_times_is_quarantined_then_requeued(
    make_vault, tmp_path: Path, name: str
) -> None:
    def config(command: list[str]) -> str:
        return f"""
        [jobs.fragile]
        command = {toml(command)}
        on_files = ["Inbox/*.md"]
        quarantine_after = 3
        retries = 0
        retry_delay = "50ms"
        """

    vault = make_vault(config(["sh", "-c", "exit 1"]))
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop(vault / "Inbox", [name], tmp_path / "staging")
    original, location = f"Inbox/{name}", f"Needs_Action/{name}"
    quarantined = vault / location
    note = vault / "Needs_Action" / f"{name}.why.md"
    await until(lambda: quarantined.exists() and note.exists())
    await keeper.wait_idle(10)

    failures = file_records(vault, "fragile")
    assert [(r["status"], r["files"]) for r in failures] == [("failure", [original])] * 3
    assert not (vault / original).exists()
    text = note.read_text()
    assert "`fragile`" in text and f"`{original}`" in text
    ledger = [json.loads(line) for line in (vault / "Logs" / "files.jsonl").open()]
    assert [e["outcome"] for e in ledger] == ["failure", "failure", "failure", "quarantined"]
    assert (ledger[-1]["path"], ledger[-1]["note"]) == (original, location)

    # Mend the job first, then requeue: the keeper in this process takes no SIGHUP,
    # so seeing the file come back to where it was quarantined from must be enough.
    (vault / "watchkeeper.toml").write_text(config(["true"]))
    assert keeper.reload("test")

    # The command the note gives, run as written (by a shell's rules), from the vault.
    (command,) = re.findall(r"`(watchkeeper requeue [^`]*)`", text)
    argv = shlex.split(command)
    assert argv == ["watchkeeper", "requeue", location], command
    result = await asyncio.to_thread(run_cli, *argv[1:], cwd=vault)
    assert result.returncode == 0, result.stderr
    assert (vault / original).exists()
    assert not quarantined.exists() and not note.exists()
    await until(lambda: len(file_records(vault, "fragile")) == 4)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    records = file_records(vault, "fragile")
    assert [(r["status"], r["files"]) for r in records[3:]] == [("success", [original])]
    outcomes = [json.loads(line)["outcome"] for line in (vault / "Logs" / "files.jsonl").open()]
    assert outcomes[-2:] == ["requeued", "success"]


@pytest.mark.parametrize("overlap", ["skip", "queue"])
async def test_files_arriving_during_a_run_go_to_its_next_run(
    make_vault, tmp_path: Path, overlap: str
) -> None:
    out = tmp_path / "out.jsonl"
    gate = tmp_path / "gate"
    # Records what it got, then holds the run open until the test opens the gate.
    hold = f"\nimport time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    command = [*RECORD[:2], RECORD[2] + hold]
    vault = make_vault(
        f"""
        [jobs.triage]
        command = {toml(command)}
        on_files = ["Inbox/*.md"]
        overlap = {toml(overlap)}
        env = {{ OUT = {toml(str(out))} }}
        """
    )
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    staging = tmp_path / "staging"
    drop(vault / "Inbox", ["a.md"], staging)
    await until(lambda: handed(out) == ["Inbox/a.md"])
    drop(vault / "Inbox", ["b.md", "c.md", "d.md"], staging)
    runtime = keeper.jobs["triage"]
    await until(lambda: keeper.job_view(runtime)["files_pending"] == 3)
    assert len(runtime.active) == 1
    gate.touch()
    await until(lambda: len(handed(out)) == 4)
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert [sorted(path for path, _ in run) for run in runs_seen(out)] == [
        ["Inbox/a.md"],
        ["Inbox/b.md", "Inbox/c.md", "Inbox/d.md"],
    ]
    records = finals(vault, "triage")
    assert [r["status"] for r in records] == ["success", "success"]  # nothing skipped


SCRATCH = [".x.md", "x.md.swp", "x.md~", "x.md.tmp", "x.md.part", "x.md.crdownload"]


async def test_hidden_and_editor_scratch_files_are_never_handed(make_vault, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # Every name in the folder matches the glob: only the scratch rule can keep them out.
    vault = make_vault(file_job("triage", out, glob="Inbox/*"))
    inbox = vault / "Inbox"
    staging = tmp_path / "staging"
    # Some wait before the keeper starts (its scan), the others arrive while it watches.
    drop(inbox, [".early.md"] + [f"early-{name}" for name in SCRATCH[1:]], staging)
    keeper = await started_keeper(vault)
    task = await serving(keeper)
    drop(inbox, SCRATCH, staging)
    (inbox / ".written.md").write_text("hidden, written in place\n")
    os.utime(inbox / ".written.md", (time.time() - 10, time.time() - 10))  # whole at once
    drop(inbox, ["real.md"], staging)
    await until(lambda: "Inbox/real.md" in handed(out))
    await keeper.wait_idle(10)
    await finish(keeper, task)
    assert handed(out) == ["Inbox/real.md"]


def test_once_hands_waiting_files_and_exits_0(make_vault, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    vault = make_vault(file_job("triage", out, extra='settle = "300ms"'))
    drop(vault / "Inbox", ["dropped.md"], tmp_path / "staging")
    (vault / "Inbox" / "fresh.md").write_text("just written\n")  # must settle first
    result = run_cli("--once", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    assert sorted(handed(out)) == ["Inbox/dropped.md", "Inbox/fresh.md"]
    assert {r["status"] for r in file_records(vault, "triage")} == {"success"}
    assert "triage" in result.stdout
    again = run_cli("--once", "--vault", str(vault))
    assert again.returncode == 0, again.stderr
    assert len(handed(out)) == 2  # exactly once across processes too
    assert len(final_records(vault)) == len(file_records(vault, "triage"))


def test_files_env_quotes_names_that_could_pose_as_another_path() -> None:
    from watchkeeper.core.handover import files_env

    names = ["Inbox/a b.md", "Inbox/x\nDashboard.md", '"q.md', "Inbox/tab\there.md"]
    env = files_env(names)
    lines = env["WATCHKEEPER_FILES"].split("\n")
    assert lines == ["Inbox/a b.md", '"Inbox/x\\nDashboard.md"', '"\\"q.md"', "Inbox/tab\there.md"]
    assert [json.loads(line) if line.startswith('"') else line for line in lines] == names
    assert json.loads(env["WATCHKEEPER_FILES_JSON"]) == names
