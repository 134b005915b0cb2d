"""--daemon as a real process: single instance, SIGTERM drain, kill -9 recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

from conftest import CLI, final_records, pid_alive, run_cli, wait_for


def start_daemon(vault: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "WATCHKEEPER_VAULT"}
    # Into a file, not a pipe nobody reads until the end: a full pipe would stall it.
    with (vault.parent / "daemon.out").open("a") as output:
        return subprocess.Popen(
            [str(CLI), "--daemon", "--vault", str(vault)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def keeper_log(vault: Path) -> str:
    path = vault / "Logs" / "watchkeeper.log"
    return path.read_text() if path.exists() else ""


def running_ids(vault: Path) -> list[str]:
    return [rid for rid, record in final_records(vault).items() if record["status"] == "running"]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_second_daemon_exits_3_naming_the_first(make_vault) -> None:
    vault = make_vault('[jobs.idle]\ncommand = ["true"]\n')
    first = start_daemon(vault)
    try:
        wait_for(lambda: "keeper started" in keeper_log(vault))
        second = run_cli("--daemon", "--vault", str(vault), timeout=30)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr
        once = run_cli("--once", "--vault", str(vault), timeout=30)
        assert once.returncode == 3
    finally:
        stop(first)


def test_sigterm_drains_running_runs_then_exits_0(make_vault, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    vault = make_vault(
        f"""
        [jobs.slowish]
        command = ["sh", "-c", "touch {marker}; sleep 1; echo finished"]
        every = "100ms"
        """
    )
    daemon = start_daemon(vault)
    try:
        wait_for(marker.exists)
        run_id = str(wait_for(lambda: running_ids(vault) and running_ids(vault)[0]))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        stop(daemon)
    record = final_records(vault)[run_id]
    assert record["status"] == "success"
    assert "draining" in keeper_log(vault) and "keeper stopped" in keeper_log(vault)
    assert running_ids(vault) == []
    assert not (vault / "Logs" / ".watchkeeper.lock").read_text().strip()


def test_sigterm_past_grace_cancels_and_leaves_no_orphans(make_vault, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    vault = make_vault(
        f"""
        [keeper]
        shutdown_grace = "300ms"
        kill_grace = "1s"
        [jobs.stuck]
        command = ["sh", "-c", "sleep 300 & echo $! > {pids}; wait"]
        every = "100ms"
        """
    )
    daemon = start_daemon(vault)
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip())
        run_id = running_ids(vault)[0]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        stop(daemon)
    assert final_records(vault)[run_id]["status"] == "cancelled"
    wait_for(lambda: not pid_alive(int(pids.read_text())))


def test_kill_9_then_restart_closes_run_as_interrupted_and_ends_its_group(
    make_vault, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    vault = make_vault(
        f"""
        [keeper]
        kill_grace = "1s"
        shutdown_grace = "1s"
        [jobs.victim]
        command = ["sh", "-c", "sleep 300 & echo $! $$ > {pids}; wait"]
        every = "100ms"
        """
    )
    first = start_daemon(vault)
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    run_id = running_ids(vault)[0]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    orphans = [int(pid) for pid in pids.read_text().split()]
    assert all(pid_alive(pid) for pid in orphans), "kill -9 of the keeper does not end its runs"

    second = start_daemon(vault)
    try:
        wait_for(lambda: final_records(vault)[run_id]["status"] == "interrupted")
        record = final_records(vault)[run_id]
        assert f"keeper pid {first.pid}" in record["error"]
        assert "leftover process" in record["error"]
        wait_for(lambda: not any(pid_alive(pid) for pid in orphans))
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        stop(second)


def test_a_status_probe_never_makes_a_starting_keeper_give_up(tmp_path: Path) -> None:
    # holder() holds the lock for microseconds while it looks (`--status` does); acquire()
    # outwaits that instead of reporting another keeper. Threads probe here: they meet
    # the acquiring thread in the lock far more often than another process would.
    from watchkeeper.core.lock import acquire, holder

    vault = tmp_path / "vault"
    acquire(vault).release()
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            holder(vault)

    probers = [threading.Thread(target=probe) for _ in range(2)]
    for prober in probers:
        prober.start()
    try:
        for _ in range(300):
            acquire(vault).release()
    finally:
        stop.set()
        for prober in probers:
            prober.join()
