"""The command line's basics through the real entry point: which vault a command may
act on, --version and -h, did-you-mean, --status as a health check, --since dates,
describe, and one way of printing durations."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import final_records, run_cli

from watchkeeper.core.history import RunRecord, segment_path
from watchkeeper.core.units import format_duration

NO_VAULT = "no watchkeeper.toml here or above; pass --vault"


@pytest.fixture
def nowhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty folder outside any vault, and an environment whose user data dir (where
    the demo vault lives) is a fresh one in tmp_path."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder, {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}


# ---- which vault ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["requeue", "Needs_Action/x.md"],
        ["service", "install", "--dry-run"],
        ["--daemon"],
        ["--once"],
        ["run", "vault-watcher"],
        ["history"],
    ],
)
def test_commands_on_a_vaults_own_files_do_not_fall_back_to_the_demo(nowhere, args) -> None:
    folder, env = nowhere
    result = run_cli(*args, cwd=folder, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert NO_VAULT in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was created: the demo vault stays unmade.
    assert not (folder.parent / "data").exists()


def test_validate_says_where_the_demo_vault_is_once_it_exists(nowhere) -> None:
    folder, env = nowhere
    assert run_cli("jobs", cwd=folder, env=env).returncode == 0  # may create the demo
    demo = folder.parent / "data" / "watchkeeper" / "vault"
    result = run_cli("validate", cwd=folder, env=env)
    assert result.returncode == 2
    assert f"{NO_VAULT} or a path (the demo vault is {demo})" in result.stderr


def test_status_and_jobs_may_fall_back_to_the_demo(nowhere) -> None:
    folder, env = nowhere
    status = run_cli("--status", "--json", cwd=folder, env=env)
    assert status.returncode == 4, status.stderr
    assert json.loads(status.stdout)["vault"].endswith("watchkeeper/vault")
    assert "created the demo vault" in status.stderr
    assert run_cli("jobs", cwd=folder, env=env).returncode == 0


def test_validate_a_config_file_by_path(make_vault, nowhere) -> None:
    folder, env = nowhere
    good = folder / "candidate.toml"
    good.write_text('[jobs.a]\ncommand = ["true"]\nevery = "5m"\n')
    result = run_cli("validate", str(good), cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{good}: ok, 1 job(s)\n"
    bad = folder / "broken.toml"
    bad.write_text('[jobs.a]\ncommand = ["true"]\nevry = "5m"\n')
    result = run_cli("validate", str(bad), cwd=folder, env=env)
    assert result.returncode == 2
    assert f"{bad}:3: jobs.a.evry:" in result.stderr and "did you mean 'every'" in result.stderr
    vault = make_vault('[jobs.b]\ncommand = ["true"]\n')
    by_folder = run_cli("validate", str(vault), cwd=folder, env=env)
    assert by_folder.returncode == 0 and "ok, 1 job(s)" in by_folder.stdout
    missing = run_cli("validate", str(folder / "nope.toml"), cwd=folder, env=env)
    assert missing.returncode == 2 and "no config file at" in missing.stderr
    both = run_cli("validate", str(good), "--vault", str(vault), cwd=folder, env=env)
    assert both.returncode == 2 and "not both" in both.stderr


def test_requeue_outside_a_vault_finds_the_vault_from_the_path(make_vault, nowhere) -> None:
    folder, env = nowhere
    vault = make_vault('[jobs.a]\ncommand = ["true"]\non_files = ["Inbox/*.md"]\n')
    stray = vault / "Needs_Action" / "x.md"
    stray.write_text("x")
    result = run_cli("requeue", str(stray), cwd=folder, env=env)
    # The vault was found from the path; the file was simply never quarantined.
    assert result.returncode == 2
    assert "Needs_Action/x.md is not a quarantined file" in result.stderr
    assert not (folder.parent / "data").exists()


# ---- --version, -h ----------------------------------------------------------------


def test_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"watchkeeper {version('watchkeeper')}\n"


COMMANDS = [
    [],
    ["init"],
    ["validate"],
    ["jobs"],
    ["history"],
    ["stats"],
    ["run"],
    ["cancel"],
    ["pause"],
    ["resume"],
    ["requeue"],
    ["logs"],
    ["describe"],
    ["service"],
    ["service", "install"],
    ["service", "uninstall"],
]


def test_h_works_on_every_command() -> None:
    listed = run_cli("-h").stdout
    for name in {args[0] for args in COMMANDS if args}:
        assert re.search(rf"^  {name}\b", listed, re.MULTILINE), name
    for args in COMMANDS:
        result = run_cli(*args, "-h")
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: watchkeeper"), args
        assert "-h, --help" in result.stdout, args


# ---- did you mean ---------------------------------------------------------------------

JOBS = """
[keeper]
timezone = "Europe/Berlin"
[jobs.nightly-report]
command = ["true"]
cron = "0 3 * * *"
[jobs.sweeper]
command = ["true"]
every = "5m"
"""


def test_did_you_mean_for_statuses_and_job_names(make_vault) -> None:
    vault = make_vault(JOBS)
    v = ("--vault", str(vault))
    status = run_cli("history", "--status", "failed", *v)
    assert status.returncode == 2
    assert "(did you mean 'failure'?)" in status.stderr
    for args in (
        ["run", "nightly-reprt"],
        ["pause", "nightly-reprt"],
        ["resume", "nightly-reprt"],
        ["logs", "nightly-reprt"],
        ["describe", "nightly-reprt"],
    ):
        result = run_cli(*args, *v)
        assert result.returncode == 2, args
        assert "no job 'nightly-reprt'" in result.stderr, args
        assert "(did you mean 'nightly-report'?)" in result.stderr, args
    far = run_cli("run", "zzz", *v)
    assert far.returncode == 2 and "did you mean" not in far.stderr
    note = run_cli("history", "--job", "swepper", *v)
    assert note.returncode == 0 and "(did you mean 'sweeper'?)" in note.stderr


# ---- --since --------------------------------------------------------------------------


def write_runs(vault: Path, starts: list[str]) -> list[str]:
    """A success record per start time (ISO, UTC), written as the keeper writes them."""
    ids = []
    for index, start in enumerate(starts):
        began = datetime.fromisoformat(start)
        record = RunRecord(
            id=f"run-{index}",
            job="sweeper",
            project="v",
            started_at=began,
            status="success",
            trigger="schedule",
            host="h",
            completed_at=began,
            duration_ms=1500,
        )
        segment = segment_path(vault / "Logs" / "history", began.astimezone(UTC).date())
        segment.parent.mkdir(parents=True, exist_ok=True)
        with segment.open("ab") as file:
            file.write(record.to_line())
        ids.append(record.id)
    return ids


def test_since_takes_dates_and_times_in_the_vaults_zone(make_vault) -> None:
    vault = make_vault(JOBS)
    v = ("--vault", str(vault))
    # Berlin is UTC+1 in December: local midnight of Dec 1 is 23:00 UTC on Nov 30.
    write_runs(
        vault,
        [
            "2026-11-30T22:30:00+00:00",
            "2026-11-30T23:30:00+00:00",
            "2026-12-01T06:59:00+00:00",
            "2026-12-01T07:00:00+00:00",
        ],
    )

    def ids(*args: str) -> list[str]:
        result = run_cli("history", "--json", *args, *v)
        assert result.returncode == 0, result.stderr
        return sorted(record["id"] for record in json.loads(result.stdout))

    assert ids("--since", "2026-12-01") == ["run-1", "run-2", "run-3"]
    assert ids("--since", "2026-12-01T08:00") == ["run-3"]
    assert ids("--since", "2026-12-01 07:59:30") == ["run-3"]
    assert ids("--since", "2026-12-01T07:00:00+00:00") == ["run-3"]
    assert ids("--since", "3650d") == ["run-0", "run-1", "run-2", "run-3"]
    stats = run_cli("stats", "--json", "--since", "2026-12-01", *v)
    assert json.loads(stats.stdout)["jobs"]["sweeper"]["runs"] == 3
    bad = run_cli("history", "--since", "yesterday", *v)
    assert bad.returncode == 2
    assert "--since: expected a duration like 24h or 7d, or a date/time like" in bad.stderr


# ---- --status as a health check ------------------------------------------------------


def test_status_exits_4_when_no_keeper_runs(make_vault) -> None:
    vault = make_vault(JOBS)
    text = run_cli("--status", "--vault", str(vault))
    assert text.returncode == 4 and "keeper: not running" in text.stdout
    as_json = run_cli("--status", "--json", "--vault", str(vault))
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout)["keeper"]["running"] is False


# ---- describe -------------------------------------------------------------------------


def test_describe_prints_the_config_and_next_fire_times(make_vault) -> None:
    vault = make_vault(JOBS.replace("Europe/Berlin", "UTC"))
    result = run_cli("describe", "nightly-report", "-n", "3", "--vault", str(vault))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "job nightly-report"
    assert any(line.split() == ["command", "true"] for line in lines)
    assert any(line.split() == ["trigger", "cron", "0", "3", "*", "*", "*"] for line in lines)
    assert any(line.split()[:2] == ["config", "line"] for line in lines)
    start = lines.index("next 3 fire time(s):")
    times = lines[start + 1 : start + 4]
    assert all(" 03:00:00 UTC  in " in line and line.endswith("(cron)") for line in times)
    days = [line.split()[0] for line in times]
    assert days == sorted(set(days))
    data = json.loads(run_cli("describe", "sweeper", "--json", "--vault", str(vault)).stdout)
    assert data["name"] == "sweeper" and data["config"]["every"] == 300.0
    assert len(data["next"]) == 5 and {fire["source"] for fire in data["next"]} == {"every"}
    gaps = [
        (datetime.fromisoformat(b["time"]) - datetime.fromisoformat(a["time"])).total_seconds()
        for a, b in zip(data["next"], data["next"][1:], strict=False)
    ]
    assert gaps == [300.0] * 4
    none = run_cli("describe", "nightly-report", "-n", "0", "--vault", str(vault))
    assert none.returncode == 0 and "fire time" not in none.stdout


# ---- durations ------------------------------------------------------------------------


def test_once_run_and_history_print_durations_the_same_way(make_vault) -> None:
    vault = make_vault('[jobs.nap]\ncommand = ["sleep", "0.3"]\nevery = "1h"\n')
    once = run_cli("--once", "--vault", str(vault))
    assert once.returncode == 0, once.stderr
    record = next(r for r in final_records(vault).values() if r["status"] == "success")
    shown = once.stdout.split()[3]
    # 300ms, or 1.2s on a slow box: never "300 ms" as --once used to print.
    assert shown == format_duration(record["duration"] / 1000), once.stdout
    row = next(
        line
        for line in run_cli("history", "--vault", str(vault)).stdout.splitlines()
        if record["id"] in line
    )
    assert f" {shown} " in row
    local = run_cli("run", "nap", "--vault", str(vault))
    ran = next(r for r in final_records(vault).values() if r["trigger"] == "manual")
    assert f"  {format_duration(ran['duration'] / 1000)}  " in local.stdout
