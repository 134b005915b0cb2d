"""The keeper's watches of the vault and of its config: each stops on its own, none dies
silently, and a reload never takes one down. Real daemons, real files, real events."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import final_records, finish, keeper_log, started_keeper, until, wait_for

from watchkeeper.core.watchers import Supervised

# Appends WATCHKEEPER_FILES to $OUT as bytes: a name need not be UTF-8.
HANDED = (
    "python3 -c \"import os; open(os.environ['OUT'], 'ab')"
    ".write(os.environb[b'WATCHKEEPER_FILES'] + b'\\n')\""
)


def file_job(name: str, out: Path, glob: str = "Inbox/*.md") -> str:
    return (
        f"[jobs.{name}]\n"
        f"command = {json.dumps(HANDED)}\n"
        f"on_files = [{json.dumps(glob)}]\n"
        f"env = {{ OUT = {json.dumps(str(out))} }}\n"
    )


def handed(out: Path) -> list[str]:
    return os.fsdecode(out.read_bytes()).split() if out.exists() else []


def drop(folder: Path, name: str, staging: Path) -> None:
    """Written outside the vault, then renamed in: it arrives whole."""
    staging.mkdir(exist_ok=True)
    (staging / name).write_text("work\n")
    os.rename(staging / name, folder / name)


def stop_daemon(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_adding_a_file_job_by_reload_keeps_every_watch_alive(
    make_vault, daemon, tmp_path: Path
) -> None:
    out = tmp_path / "handed"
    vault = make_vault('[jobs.idle]\ncommand = ["true"]\n')
    config = vault / "watchkeeper.toml"
    process = daemon(vault)

    config.write_text('[jobs.idle]\ncommand = ["true"]\n' + file_job("take", out))
    process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded (SIGHUP): 2 job(s)" in keeper_log(vault))

    drop(vault / "Inbox", "one.md", tmp_path / "staging")
    wait_for(lambda: handed(out) == ["Inbox/one.md"])
    drop(vault / "Inbox", "two.md", tmp_path / "staging")
    wait_for(lambda: handed(out) == ["Inbox/one.md", "Inbox/two.md"])

    # A later change of the file is still seen, and applied.
    config.write_text(config.read_text() + '[jobs.late]\ncommand = ["true"]\n')
    wait_for(lambda: "config reloaded (the config file changed): 3 job(s)" in keeper_log(vault))
    drop(vault / "Inbox", "three.md", tmp_path / "staging")
    wait_for(lambda: handed(out)[-1:] == ["Inbox/three.md"])
    stop_daemon(process)
    assert " ERROR " not in keeper_log(vault), keeper_log(vault)


def test_a_watched_folder_removed_and_made_again_is_watched_again(
    make_vault, daemon, tmp_path: Path
) -> None:
    out = tmp_path / "handed"
    vault = make_vault(file_job("take", out))
    process = daemon(vault)
    drop(vault / "Inbox", "one.md", tmp_path / "staging")
    wait_for(lambda: handed(out) == ["Inbox/one.md"])

    shutil.rmtree(vault / "Inbox")  # its watch ends without a word from watchfiles
    wait_for(lambda: "Inbox went away; watched again once it is back" in keeper_log(vault))
    (vault / "Inbox").mkdir()
    drop(vault / "Inbox", "two.md", tmp_path / "staging")
    wait_for(lambda: handed(out) == ["Inbox/one.md", "Inbox/two.md"], timeout=20)
    drop(vault / "Inbox", "three.md", tmp_path / "staging")
    wait_for(lambda: handed(out)[-1:] == ["Inbox/three.md"])
    stop_daemon(process)
    assert len(final_records(vault)) == 3


def test_a_name_that_is_not_utf8_stops_nothing(make_vault, daemon, tmp_path: Path) -> None:
    out = tmp_path / "handed"
    vault = make_vault(file_job("take", out, glob="Inbox/*"))
    process = daemon(vault)
    inbox = os.fsencode(vault / "Inbox")
    staging = os.fsencode(tmp_path)
    fd = os.open(staging + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"latin-1\n")
    os.close(fd)
    os.rename(staging + b"/caf\xe9.txt", inbox + b"/caf\xe9.txt")
    wait_for(lambda: len(final_records(vault)) >= 1)

    # Later files are still handed over, and the keeper's outputs still written.
    drop(vault / "Inbox", "after.md", tmp_path / "staging")
    wait_for(lambda: "Inbox/after.md" in handed(out))
    dashboard = vault / "Dashboard.md"
    written = dashboard.stat().st_mtime_ns if dashboard.exists() else 0
    wait_for(lambda: dashboard.exists() and dashboard.stat().st_mtime_ns > written)

    socket = Path(json.loads((vault / "Logs" / ".watchkeeper.lock").read_text())["socket"])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not socket.exists()
    log = keeper_log(vault)
    assert log.rstrip().endswith("keeper stopped"), log
    assert not any(record["status"] == "running" for record in final_records(vault).values())


async def test_a_watch_that_fails_is_logged_and_started_again(make_vault) -> None:
    vault = make_vault('[jobs.idle]\ncommand = ["true"]\n')
    keeper = await started_keeper(vault)
    starts: list[float] = []

    async def body(stop: asyncio.Event) -> None:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise UnicodeEncodeError("utf-8", "caf\udce9", 3, 4, "surrogates not allowed")
        if len(starts) == 2:
            return  # ended without being asked to
        await stop.wait()

    watch = Supervised("test watch", body, keeper.log.error)
    await until(lambda: len(starts) == 3)
    watch.renew()
    await until(lambda: len(starts) == 4)
    await watch.close()
    await finish(keeper)
    log = keeper_log(vault)
    assert "ERROR test watch failed: UnicodeEncodeError: 'utf-8' codec can't encode" in log
    assert "; starting it again in 500ms" in log
    assert "ERROR test watch ended by itself; starting it again in 1s" in log
    assert log.count("test watch") == 2  # a renewal is no failure
    assert starts[2] - starts[1] >= 1.0  # the backoff grows while it keeps failing
