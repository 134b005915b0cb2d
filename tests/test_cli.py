"""The real `watchkeeper` entry point in subprocesses: the operator's first minutes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import final_records, run_cli

DEMO_JOBS = ["archiver", "plan-worker", "sample-notes", "task-planner", "vault-watcher"]
# The demo's jobs pause so that an operator sees them RUNNING; these tests need not wait.
FAST_DEMO = {"DEMO_PACE": "0"}


@pytest.fixture
def demo_vault(tmp_path: Path) -> Path:
    vault = tmp_path / "v"
    result = run_cli("init", str(vault))
    assert result.returncode == 0, result.stderr
    return vault


def test_init_then_once_records_a_success_per_job(demo_vault: Path) -> None:
    result = run_cli("--once", "--vault", str(demo_vault), env=FAST_DEMO)
    assert result.returncode == 0, result.stdout + result.stderr
    finals = [r for r in final_records(demo_vault).values() if r["status"] != "running"]
    assert sorted({r["taskId"] for r in finals}) == DEMO_JOBS
    assert all(r["status"] == "success" for r in finals)
    # The demo flow really ran: Welcome.md and a sample note left Inbox and got plans,
    # which wait beside them in Needs_Action until approved.
    assert (demo_vault / "Needs_Action" / "Welcome.md").exists()
    assert (demo_vault / "Needs_Action" / "Welcome.plan.md").exists()
    samples = [
        path
        for path in (demo_vault / "Needs_Action").glob("sample-*.md")
        if not path.name.endswith(".plan.md")
    ]
    assert len(samples) == 1
    assert (demo_vault / "Needs_Action" / f"{samples[0].stem}.plan.md").exists()
    assert list((demo_vault / "Plans").iterdir()) == []
    assert list((demo_vault / "Inbox").iterdir()) == []
    if shutil.which("jq"):
        for segment in (demo_vault / "Logs" / "history").glob("*.jsonl"):
            jq = subprocess.run(
                ["jq", "-r", 'select(.status == "success") | .taskId', str(segment)],
                capture_output=True,
                text=True,
                check=True,
            )
            assert sorted(set(jq.stdout.split())) == DEMO_JOBS


def test_once_dry_run_runs_nothing(demo_vault: Path) -> None:
    result = run_cli("--once", "--dry-run", "--vault", str(demo_vault))
    assert result.returncode == 0
    assert "would run vault-watcher" in result.stdout and "would run archiver" in result.stdout
    assert "would run sample-notes" in result.stdout
    assert "task-planner" in result.stdout
    assert final_records(demo_vault) == {}


def test_once_exits_1_when_a_job_fails(make_vault) -> None:
    vault = make_vault('[jobs.bad]\ncommand = ["false"]\nevery = "1h"\n')
    result = run_cli("--once", "--vault", str(vault))
    assert result.returncode == 1
    assert "✘ failure  bad" in result.stdout


def test_init_twice_changes_nothing(demo_vault: Path) -> None:
    before = (demo_vault / "watchkeeper.toml").read_text()
    result = run_cli("init", str(demo_vault))
    assert result.returncode == 0 and "nothing changed" in result.stdout
    assert (demo_vault / "watchkeeper.toml").read_text() == before


def test_validate_reports_every_error_with_file_line_key(make_vault) -> None:
    vault = make_vault(
        """\
        [keeper]
        max_parallel = "four"

        [jobs.a]
        command = ["true"]
        evry = "5m"
        cron = "61 * * * *"
        """
    )
    result = run_cli("validate", "--vault", str(vault))
    assert result.returncode == 2
    config = vault / "watchkeeper.toml"
    assert f"{config}:2: keeper.max_parallel:" in result.stderr
    assert f"{config}:6: jobs.a.evry:" in result.stderr and "did you mean 'every'" in result.stderr
    assert f"{config}:7: jobs.a.cron:" in result.stderr
    assert "3 error(s)" in result.stderr


def test_validate_ok(demo_vault: Path) -> None:
    result = run_cli("validate", "--vault", str(demo_vault))
    assert result.returncode == 0 and "ok, 5 job(s)" in result.stdout


def test_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("--status", "--vault", str(tmp_path))
    assert result.returncode == 2
    assert "no watchkeeper.toml" in result.stderr and "watchkeeper init" in result.stderr


def test_vault_from_env_and_from_ancestor(demo_vault: Path) -> None:
    by_env = run_cli("jobs", "--json", env={"WATCHKEEPER_VAULT": str(demo_vault)})
    assert by_env.returncode == 0, by_env.stderr
    nested = demo_vault / "Plans"
    by_ancestor = run_cli("jobs", "--json", cwd=nested)
    assert json.loads(by_env.stdout) == json.loads(by_ancestor.stdout)


def test_default_vault_is_created_with_the_demo(tmp_path: Path) -> None:
    result = run_cli(
        "--status", "--json", cwd=tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "data")}
    )
    assert result.returncode == 4, result.stderr  # no keeper running
    status = json.loads(result.stdout)
    assert status["vault"] == str(tmp_path / "data" / "watchkeeper" / "vault")
    assert [job["name"] for job in status["jobs"]] == [
        "vault-watcher",
        "task-planner",
        "plan-worker",
        "archiver",
        "sample-notes",
    ]


def test_status_json_after_a_run(demo_vault: Path) -> None:
    run_cli("--once", "--vault", str(demo_vault), env=FAST_DEMO)
    result = run_cli("--status", "--json", "--vault", str(demo_vault))
    assert result.returncode == 4
    status = json.loads(result.stdout)
    assert status["keeper"]["running"] is False
    waiting = status["folders"]["Needs_Action"]
    # Two notes and their plans, which wait for approval.
    assert waiting["count"] == 4 and "Welcome.md" in waiting["newest"]
    successes = [r for r in final_records(demo_vault).values() if r["status"] == "success"]
    assert status["today"] == {"ok": len(successes), "failed": 0}
    jobs = {job["name"]: job for job in status["jobs"]}
    assert jobs["archiver"]["next_run"] is not None
    assert jobs["task-planner"]["last"]["status"] == "success"
    # Without a TTY the bare command prints the status.
    plain = run_cli("--vault", str(demo_vault))
    assert plain.returncode == 0 and "keeper: not running" in plain.stdout


def test_history_filters_and_json(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.ok]
        command = ["true"]
        every = "1h"
        [jobs.bad]
        command = ["sh", "-c", "exit 4"]
        every = "1h"
        """
    )
    for _ in range(3):
        run_cli("--once", "--vault", str(vault))
    everything = json.loads(run_cli("history", "--json", "--vault", str(vault)).stdout)
    assert len(everything) == 6
    assert everything == sorted(everything, key=lambda r: r["startedAt"], reverse=True)
    failures = json.loads(
        run_cli("history", "--json", "--status", "failure", "--vault", str(vault)).stdout
    )
    assert {r["taskId"] for r in failures} == {"bad"} and len(failures) == 3
    assert all(r["exitCode"] == 4 for r in failures)
    limited = json.loads(
        run_cli("history", "--json", "--job", "ok", "--limit", "2", "--vault", str(vault)).stdout
    )
    assert [r["taskId"] for r in limited] == ["ok", "ok"]
    future = json.loads(run_cli("history", "--json", "--since", "0s", "--vault", str(vault)).stdout)
    assert future == []
    bad_status = run_cli("history", "--status", "weird", "--vault", str(vault))
    assert bad_status.returncode == 2 and "--status" in bad_status.stderr
    bad_since = run_cli("history", "--since", "yesterday", "--vault", str(vault))
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr
    table = run_cli("history", "--vault", str(vault))
    assert "✘ failure" in table.stdout and "exit code 4" in table.stdout


def test_stats_json(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.ok]
        command = ["true"]
        every = "1h"
        [jobs.bad]
        command = ["false"]
        every = "1h"
        """
    )
    for _ in range(2):
        run_cli("--once", "--vault", str(vault))
    stats = json.loads(run_cli("stats", "--json", "--vault", str(vault)).stdout)["jobs"]
    assert stats["ok"]["runs"] == 2 and stats["ok"]["success_rate"] == 1.0
    assert stats["bad"]["runs"] == 2 and stats["bad"]["success_rate"] == 0.0
    assert stats["ok"]["p50_ms"] is not None


def test_run_job_locally(make_vault) -> None:
    vault = make_vault(
        '[jobs.hello]\ncommand = ["sh", "-c", "echo hi; exit $X"]\nenv = { X = "0" }\n'
    )
    result = run_cli("run", "hello", "--vault", str(vault))
    assert result.returncode == 0 and "(locally)" in result.stdout
    record = next(r for r in final_records(vault).values())
    assert (record["trigger"], record["status"]) == ("manual", "success")
    unknown = run_cli("run", "nope", "--vault", str(vault))
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr


def test_jobs_table_shows_paused(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\ncron = "0 3 * * *"\n')
    (vault / "Logs" / "state.toml").write_text('paused = false\npaused_jobs = ["a"]\n')
    result = run_cli("jobs", "--vault", str(vault))
    assert "paused" in result.stdout and "cron 0 3 * * *" in result.stdout
    view = json.loads(run_cli("jobs", "--json", "--vault", str(vault)).stdout)
    # A paused job has no next run: its slots pass unrun until it is resumed.
    assert view[0]["paused"] is True and view[0]["next_run"] is None


def test_conflicting_flags_are_usage_errors(demo_vault: Path) -> None:
    assert run_cli("--once", "--daemon", "--vault", str(demo_vault)).returncode == 2
    assert run_cli("--dry-run", "--vault", str(demo_vault)).returncode == 2
    assert run_cli("no-such-command").returncode == 2
