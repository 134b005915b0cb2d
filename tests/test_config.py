"""watchkeeper.toml validation: every problem found at once, each at its file, line and key."""

from __future__ import annotations

import os
import zoneinfo
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from config_kit import issues_of, located, one_issue, write

from watchkeeper.core.config import (
    CONFIG_NAME,
    ConfigError,
    _localtime_zone,
    default_timezone,
    load_config,
    parse_config,
)
from watchkeeper.core.cron import CronSchedule

# Copied from DESIGN.md ("Config" section).
DESIGN_EXAMPLE = """\
[keeper]
timezone = "Europe/Berlin"   # IANA name; default: the machine's local zone
max_runs_per_hour = 60       # global quota, sliding 60-minute window; 0 or unset = none
max_parallel = 4             # runs at once
log_max_size = "5MB"
log_backups = 3
history_retention_days = 30
catch_up = "once"            # after downtime: run each missed slot once, or "none"

[jobs.vault-watcher]
command = ["python3", "scripts/watcher.py"]   # argv list: no shell
every = "5m"

[jobs.task-planner]
command = "python3 scripts/task_planner.py --once"   # a string runs under /bin/sh -c
after = ["vault-watcher"]    # runs when vault-watcher succeeds
timeout = "5m"
retries = 2
retry_delay = "30s"          # exponential backoff with full jitter, capped by max_retry_delay

[jobs.triage]
command = ["python3", "scripts/triage.py"]
on_files = ["Inbox/*.md"]    # globs relative to the vault
max_per_hour = 10            # per-job quota
overlap = "queue"            # skip | queue | allow
settle = "1s"                # a file still being written waits until it holds still this long
quarantine_after = 3         # failed runs on one file before it moves to Needs_Action/ with a note
secret_env = ["API_TOKEN"]   # masked wherever written
env = { API_TOKEN = "${API_TOKEN}" }   # ${NAME} comes from the keeper's environment
env_file = ".env"            # optional KEY=VALUE file, relative to the vault

[jobs.nightly-report]
command = ["python3", "scripts/report.py"]
cron = "0 3 * * *"
on_failure = ["notify-send", "nightly-report failed"]
"""


# --- the example config ----------------------------------------------------------------------


def test_design_example_parses_with_expected_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))

    assert config.vault == tmp_path
    keeper = config.keeper
    assert (keeper.timezone, keeper.tz) == ("Europe/Berlin", ZoneInfo("Europe/Berlin"))
    assert keeper.max_runs_per_hour == 60
    assert keeper.max_parallel == 4
    assert keeper.log_max_size == 5 * 1024 * 1024
    assert keeper.log_backups == 3
    assert keeper.history_retention_days == 30
    assert keeper.catch_up == "once"
    assert (keeper.kill_grace, keeper.shutdown_grace) == (5.0, 30.0)

    assert list(config.jobs) == ["vault-watcher", "task-planner", "triage", "nightly-report"]
    watcher = config.jobs["vault-watcher"]
    assert watcher.command == ("python3", "scripts/watcher.py")
    assert watcher.every == 300.0
    assert watcher.line == 10
    assert watcher.scheduled

    planner = config.jobs["task-planner"]
    assert planner.command == "python3 scripts/task_planner.py --once"
    assert planner.after == ("vault-watcher",)
    assert (planner.timeout, planner.retries, planner.retry_delay) == (300.0, 2, 30.0)
    assert planner.line == 14
    assert not planner.scheduled

    triage = config.jobs["triage"]
    assert triage.on_files == ("Inbox/*.md",)
    assert triage.max_per_hour == 10
    assert triage.overlap == "queue"
    assert triage.settle == 1.0
    assert triage.quarantine_after == 3
    assert triage.secret_env == ("API_TOKEN",)
    assert triage.env == {"API_TOKEN": "${API_TOKEN}"}
    assert triage.env_file == ".env"
    assert triage.line == 21

    nightly = config.jobs["nightly-report"]
    assert nightly.cron == "0 3 * * *"
    assert nightly.on_failure == ("notify-send", "nightly-report failed")
    assert nightly.on_success is None
    assert nightly.enabled
    assert nightly.line == 32


def test_defaults_without_keeper_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    config = load_config(write(tmp_path, '[jobs.a]\ncommand = "true"\n'))
    assert config.keeper.timezone == "America/New_York"
    assert config.keeper.log_max_size == 5 * 1024 * 1024
    job = config.jobs["a"]
    assert (job.retries, job.overlap, job.enabled, job.line) == (0, "skip", True, 1)


# --- one test per kind of error ----------------------------------------------------------------


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [jobs.triage]
        command = "true"
        overlapp = "queue"
        """,
    )
    assert located(issue) == (3, "jobs.triage.overlapp")
    assert issue.message == "unknown key 'overlapp' (did you mean 'overlap'?)"
    assert str(issue) == (
        f"{tmp_path / CONFIG_NAME}:3: jobs.triage.overlapp: "
        "unknown key 'overlapp' (did you mean 'overlap'?)"
    )


def test_unknown_keeper_key(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, "[keeper]\nmax_paralel = 2\n")
    assert located(issue) == (2, "keeper.max_paralel")
    assert "did you mean 'max_parallel'?" in issue.message


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('retries = "ten"', "retries", "expected an integer from 0 to 100, got 'ten'"),
        ("retries = true", "retries", "expected an integer from 0 to 100, got true"),
        ("max_per_hour = 2.0", "max_per_hour", "expected an integer from 0 to 1,000,000"),
        ("quarantine_after = 0", "quarantine_after", "expected an integer from 1 to 1,000"),
        ('enabled = "yes"', "enabled", "expected true or false, got 'yes'"),
        ("description = 5", "description", "expected a string, got 5"),
        ("secret_env = ['A', '']", "secret_env", "expected a list of non-empty strings"),
        ("after = 'a'", "after", "expected a list of non-empty strings, got 'a'"),
        ("on_failure = []", "on_failure", "expected a command string or a non-empty list"),
        ("on_success = ['x', 1]", "on_success", "expected a command string or a non-empty list"),
        ("env_file = '/etc/env'", "env_file", "expected a path relative to the vault"),
        ("env = 'A=1'", "env", "expected a table like"),
        ("env = { A = 'x', B = 1 }", "env.B", "expected a string, got 1"),
    ],
)
def test_wrong_type(tmp_path: Path, line: str, key: str, message: str) -> None:
    issue = one_issue(tmp_path, f'[jobs.a]\ncommand = "true"\n{line}\n')
    assert located(issue) == (3, f"jobs.a.{key}")
    assert issue.message.startswith(message)


def test_wrong_keeper_type(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "[keeper]\nlog_backups = -1\nmax_parallel = 0\n")
    assert [(i.line, i.key, i.message) for i in issues] == [
        (2, "keeper.log_backups", "expected an integer from 0 to 1,000, got -1"),
        (3, "keeper.max_parallel", "expected an integer from 1 to 10,000, got 0"),
    ]


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('timeout = "5 minutes"', "timeout", "expected a duration like"),
        ('every = "0s"', "every", "expected a duration from 50ms to 366d, got '0s'"),
        ("retry_delay = -5", "retry_delay", "a duration cannot be negative"),
        ("settle = true", "settle", "expected a duration like"),
    ],
)
def test_bad_duration(tmp_path: Path, line: str, key: str, message: str) -> None:
    issue = one_issue(tmp_path, f'\n[jobs.a]\n\ncommand = "true"\n{line}\n')
    assert located(issue) == (5, f"jobs.a.{key}")
    assert issue.message.startswith(message)


def test_durations_and_sizes_are_converted(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
            [keeper]
            log_max_size = "512KiB"
            kill_grace = "1500ms"
            shutdown_grace = "1m30s"
            [jobs.a]
            command = "true"
            every = 90
            max_retry_delay = "1h"
            """,
        )
    )
    assert config.keeper.log_max_size == 512 * 1024
    assert (config.keeper.kill_grace, config.keeper.shutdown_grace) == (1.5, 90.0)
    assert (config.jobs["a"].every, config.jobs["a"].max_retry_delay) == (90.0, 3600.0)


@pytest.mark.parametrize("value", ['"5XB"', '"0MB"', "[1]"])
def test_bad_size(tmp_path: Path, value: str) -> None:
    issue = one_issue(tmp_path, f"# sizes\n[keeper]\nlog_max_size = {value}\n")
    assert located(issue) == (3, "keeper.log_max_size")
    assert "expected a size" in issue.message


@pytest.mark.parametrize("expr", ["every day at three", "61 * * * *", "* * 31 2 *"])
def test_bad_cron(tmp_path: Path, expr: str) -> None:
    with pytest.raises(ValueError) as cron_error:
        CronSchedule.parse(expr)
    issue = one_issue(
        tmp_path,
        f"""\
        [jobs.nightly]
        command = "true"
        cron = "{expr}"
        """,
    )
    assert located(issue) == (3, "jobs.nightly.cron")
    assert issue.message == str(cron_error.value)


def test_good_cron_is_kept(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[jobs.n]\ncommand = "true"\ncron = "*/5 * * * *"\n'))
    assert config.jobs["n"].cron == "*/5 * * * *"


def test_bad_timezone(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, '[keeper]\ntimezone = "Europe/Berln"\n')
    assert located(issue) == (2, "keeper.timezone")
    assert issue.message == "unknown IANA time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"


@pytest.mark.parametrize("name", ["Europe", "../etc/passwd", "/usr/share/zoneinfo/UTC", ""])
def test_timezone_that_is_no_zone_name(tmp_path: Path, name: str) -> None:
    issue = one_issue(tmp_path, f'[keeper]\ntimezone = "{name}"\n')
    assert located(issue) == (2, "keeper.timezone")


def test_bad_enum(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        [keeper]
        catch_up = "all"
        [jobs.a]
        command = "true"
        overlap = "queu"
        """,
    )
    assert [(i.line, i.key, i.message) for i in issues] == [
        (2, "keeper.catch_up", "expected one of 'once', 'none', got 'all'"),
        (
            5,
            "jobs.a.overlap",
            "expected one of 'skip', 'queue', 'allow', got 'queu' (did you mean 'queue'?)",
        ),
    ]


def test_unknown_after_job(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [jobs.watcher]
        command = "true"

        [jobs.planner]
        command = "true"
        after = ["wacher"]
        """,
    )
    assert located(issue) == (6, "jobs.planner.after")
    assert issue.message == "unknown job 'wacher' (did you mean 'watcher'?)"


def test_after_itself(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, '[jobs.a]\ncommand = "true"\nafter = ["a"]\n')
    assert located(issue) == (3, "jobs.a.after")
    assert issue.message == "job 'a' cannot run after itself"


def test_after_cycle_is_named_once(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [jobs.a]
        command = "true"
        after = ["c"]
        [jobs.b]
        command = "true"
        after = ["a"]
        [jobs.c]
        after = ["b"]
        command = "true"
        [jobs.d]
        command = "true"
        after = ["a"]
        """,
    )
    assert located(issue) == (3, "jobs.a.after")
    assert issue.message == "jobs wait on each other in a cycle: a -> c -> b -> a"


def test_two_separate_cycles(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """\
        [jobs.x]
        command = "true"
        after = ["y"]
        [jobs.y]
        command = "true"
        after = ["x"]
        [jobs.p]
        command = "true"
        after = ["q"]
        [jobs.q]
        command = "true"
        after = ["p"]
        """,
    )
    assert [(i.line, i.key, i.message.split(": ")[-1]) for i in issues] == [
        (3, "jobs.x.after", "x -> y -> x"),
        (9, "jobs.p.after", "p -> q -> p"),
    ]


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ('[jobs."two words"]', 'jobs."two words"'),
        ("[jobs.-dash]", "jobs.-dash"),
        ("[jobs.'a/b']", 'jobs."a/b"'),
        ('[jobs.".hidden"]', 'jobs.".hidden"'),
    ],
)
def test_bad_job_name(tmp_path: Path, header: str, key: str) -> None:
    issue = one_issue(tmp_path, f'[keeper]\n\n{header}\ncommand = "true"\n')
    assert located(issue) == (3, key)
    assert issue.message.startswith("bad job name")


def test_job_names_with_dots_and_underscores_are_fine(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[jobs."report.v2_x-1"]\ncommand = "true"\n'))
    assert list(config.jobs) == ["report.v2_x-1"]


def test_missing_command_points_at_the_job_header(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [jobs.a]
        command = "true"

        [jobs.b]
        every = "5m"
        """,
    )
    assert located(issue) == (4, "jobs.b.command")
    assert issue.message == "missing required key 'command'"


@pytest.mark.parametrize("value", ['""', '"   "', "[]", '[""]', "5"])
def test_empty_or_wrong_command(tmp_path: Path, value: str) -> None:
    issue = one_issue(tmp_path, f"[jobs.a]\ncommand = {value}\n")
    assert located(issue) == (2, "jobs.a.command")
    assert issue.message.startswith("expected a command string or a non-empty list of strings")


def test_toml_syntax_error(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [jobs.a]
        command = "true"
        retries 3
        """,
    )
    assert located(issue) == (3, "<toml>")
    assert issue.message.startswith("TOML syntax error: ")
    assert "(column" in issue.message


def test_toml_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, '[jobs.a]\ncommand = "true\n\n')
    assert issue.key == "<toml>"
    assert issue.line in (2, 3)


def test_unknown_top_level_table(tmp_path: Path) -> None:
    issue = one_issue(
        tmp_path,
        """\
        [keeper]
        max_parallel = 2

        [job.a]
        command = "true"
        """,
    )
    assert located(issue) == (4, "job")
    assert issue.message == "unknown table 'job' (did you mean 'jobs'?)"


def test_keeper_key_at_top_level_says_where_it_belongs(tmp_path: Path) -> None:
    issue = one_issue(tmp_path, 'timezone = "UTC"\n')
    assert located(issue) == (1, "timezone")
    assert issue.message == "unknown key 'timezone' (it belongs under [keeper])"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["/srv/inbox/*.md"]', "glob '/srv/inbox/*.md' must be relative to the vault"),
        ('["Inbox/../../etc/*"]', "glob 'Inbox/../../etc/*' must stay inside the vault"),
        ('["Inbox/*.md", ""]', "expected a list of non-empty strings"),
        ('"Inbox/*.md"', "expected a list of non-empty strings, got 'Inbox/*.md'"),
    ],
)
def test_bad_on_files_glob(tmp_path: Path, value: str, message: str) -> None:
    issue = one_issue(tmp_path, f'[jobs.triage]\ncommand = "true"\n\non_files = {value}\n')
    assert located(issue) == (4, "jobs.triage.on_files")
    assert issue.message.startswith(message)


def test_tables_of_the_wrong_shape(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, 'keeper = 5\njobs = { a = "true" }\n')
    assert [located(i) for i in issues] == [(1, "keeper"), (2, "jobs.a")]


# --- default time zone -------------------------------------------------------------------------


def test_default_timezone_from_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert default_timezone() == ("Asia/Tokyo", ZoneInfo("Asia/Tokyo"))
    monkeypatch.setenv("TZ", ":Europe/Paris")
    assert default_timezone()[0] == "Europe/Paris"


def test_default_timezone_ignores_a_tz_that_is_no_zone_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "CET-1CEST-not-a-zone")
    assert default_timezone() == _localtime_zone(Path("/etc/localtime"))


def test_localtime_link_gives_the_iana_name(tmp_path: Path) -> None:
    link = tmp_path / "localtime"
    os.symlink("../usr/share/zoneinfo/Europe/Berlin", link)
    assert _localtime_zone(link) == ("Europe/Berlin", ZoneInfo("Europe/Berlin"))


def test_localtime_copy_is_read_from_the_file(tmp_path: Path) -> None:
    sources = [Path(d) / "Europe" / "Berlin" for d in zoneinfo.TZPATH]
    source = next((path for path in sources if path.is_file()), None)
    if source is None:
        pytest.skip("no system tz database to copy a zone file from")
    copy = tmp_path / "localtime"
    copy.write_bytes(source.read_bytes())
    name, zone = _localtime_zone(copy)
    assert name == "localtime"
    summer = datetime(2024, 7, 1)
    assert zone.utcoffset(summer) == ZoneInfo("Europe/Berlin").utcoffset(summer)


def test_no_localtime_falls_back_to_utc(tmp_path: Path) -> None:
    assert _localtime_zone(tmp_path / "missing") == ("UTC", ZoneInfo("UTC"))


def test_parse_config_takes_text_and_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    config = parse_config('[jobs.a]\ncommand = "true"\n', path)
    assert config.path == path
    with pytest.raises(ConfigError) as caught:
        parse_config("[jobs.a]\n", path)
    assert caught.value.issues[0].path == path
