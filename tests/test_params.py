"""Run parameters (issue 17, DESIGN "Runs with parameters"): `params = {...}` checked at
file:line, `run JOB -p NAME=VALUE` through a real `--daemon` and locally, the values in the
run's environment (the command writes its environment to a file) and in its history line,
and refusals with exit 2 before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from config_kit import issues_of, write
from conftest import final_records, history_lines, run_cli, wait_for

from watchkeeper.core.config import CONFIG_NAME, load_config
from watchkeeper.core.history import RunRecord
from watchkeeper.core.history_scan import parse_line

# The command writes its WATCHKEEPER_PARAM_* variables to a file named by the run's id, and
# prints the token, which must reach the job log masked.
JOBS = """
[keeper]
shutdown_grace = "1s"
[jobs.report]
command = ["sh", "-c", '''
env | grep '^WATCHKEEPER_PARAM_' | sort > env-$WATCHKEEPER_RUN_ID.txt
echo token=$WATCHKEEPER_PARAM_API_TOKEN''']
params = { day = "today", dry = "no", API_TOKEN = "default-token" }
[jobs.plain]
command = ["sh", "-c", "env | grep -c '^WATCHKEEPER_PARAM_' > plain-$WATCHKEEPER_RUN_ID.txt; true"]
"""


def run_env(vault: Path, run_id: str) -> dict[str, str]:
    path = vault / f"env-{run_id}.txt"
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def run_id_of(stdout: str) -> str:
    """The id in `✔ success  report  run ID  …` or `started run ID of …`."""
    words = stdout.split()
    return words[words.index("run") + 1]


# ---- the config ------------------------------------------------------------------------


def test_params_load_as_strings_with_their_defaults(tmp_path: Path) -> None:
    text = '[jobs.a]\ncommand = ["true"]\nparams = { day = "today", dry = "no" }\n'
    config = load_config(write(tmp_path, text))
    assert config.jobs["a"].params == {"day": "today", "dry": "no"}
    assert load_config(write(tmp_path, '[jobs.a]\ncommand = ["true"]\n')).jobs["a"].params == {}


def test_params_table_form_locates_each_bad_name_on_its_line(tmp_path: Path) -> None:
    found = issues_of(
        tmp_path,
        '[jobs.a]\ncommand = ["true"]\n[jobs.a.params]\nday = "today"\n'
        '"bad-name" = "x"\ncount = 3\nDAY = "y"\n',
    )
    assert [(issue.line, issue.key, issue.message) for issue in found] == [
        (
            5,
            "jobs.a.params.bad-name",
            "'bad-name' is not a parameter name: use letters, digits and '_', "
            "not starting with a digit",
        ),
        (6, "jobs.a.params.count", "expected a string, got 3"),
        (7, "jobs.a.params.DAY", "'DAY' and 'day' would both be WATCHKEEPER_PARAM_DAY"),
    ]
    assert all(str(issue).startswith(f"{tmp_path / CONFIG_NAME}:") for issue in found)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"today"', "expected a table like { day = \"today\" }, got 'today'"),
        ("{ " + ", ".join(f'p{i} = "x"' for i in range(33)) + " }", "33 parameters; at most 32"),
        ('{ 9lives = "x" }', "'9lives' is not a parameter name"),
        (f'{{ {"n" * 65} = "x" }}', "a parameter name of 65 characters; at most 64"),
        (f'{{ day = "{"x" * 1001}" }}', "a value of 1,001 characters; at most 1,000"),
        ('{ day = { a = "b" } }', "expected a string, got a table"),
    ],
)
def test_bad_params_are_refused_at_their_line(tmp_path: Path, value: str, message: str) -> None:
    found = issues_of(tmp_path, f'[jobs.a]\ncommand = ["true"]\nparams = {value}\n')
    assert len(found) == 1, found
    assert found[0].line == 3 and found[0].key.startswith("jobs.a.params")
    assert found[0].message.startswith(message), found[0].message


def test_the_validate_command_names_file_line_and_exits_2(make_vault) -> None:
    vault = make_vault('[jobs.a]\ncommand = ["true"]\nparams = { "x y" = "1" }\n')
    done = run_cli("validate", "--vault", str(vault))
    assert done.returncode == 2
    assert f"{vault / CONFIG_NAME}:3: jobs.a.params" in done.stderr


# ---- history lines -----------------------------------------------------------------------


def test_history_lines_keep_their_shape_without_params_and_gain_params_last() -> None:
    from datetime import UTC, datetime

    plain = RunRecord("r1", "a", "v", datetime(2026, 1, 1, tzinfo=UTC), "success", "manual", "h")
    assert "params" not in plain.to_json()
    with_params = RunRecord(
        "r2",
        "a",
        "v",
        datetime(2026, 1, 1, tzinfo=UTC),
        "success",
        "manual",
        "h",
        params={"day": "today"},
    )
    assert list(with_params.to_json())[-1] == "params"
    read = parse_line(with_params.to_line())
    assert read is not None and read.params == {"day": "today"}
    old = parse_line(plain.to_line())
    assert old is not None and old.params is None


# ---- the CLI, through a keeper and locally ---------------------------------------------


def test_run_with_params_through_a_daemon(make_vault, daemon) -> None:
    vault = make_vault(JOBS)
    daemon(vault)
    v = ("--vault", str(vault))

    done = run_cli(
        "run", "report", "-p", "day=2026-12-01", "--param", "API_TOKEN=s3cr3t-value", "--wait", *v
    )
    assert done.returncode == 0, done.stderr
    assert "through keeper pid" in done.stdout
    run_id = run_id_of(done.stdout)
    assert run_env(vault, run_id) == {
        "WATCHKEEPER_PARAM_API_TOKEN": "s3cr3t-value",
        "WATCHKEEPER_PARAM_DAY": "2026-12-01",
        "WATCHKEEPER_PARAM_DRY": "no",
    }
    record = final_records(vault)[run_id]
    assert record["params"] == {"day": "2026-12-01", "dry": "no", "API_TOKEN": "***"}
    log = (vault / "Logs" / "jobs" / "report.log").read_text()
    assert "token=***" in log and "s3cr3t-value" not in log
    assert (
        "s3cr3t-value"
        not in (vault / "Logs" / "history")
        .joinpath(next(p.name for p in (vault / "Logs" / "history").iterdir()))
        .read_text()
    )

    # Without --wait, and with --follow: the same params reach the run.
    started = run_cli("run", "report", "-p", "dry=yes", *v)
    assert started.returncode == 0, started.stderr
    other = run_id_of(started.stdout)
    wait_for(lambda: final_records(vault).get(other, {}).get("status") == "success")
    assert run_env(vault, other)["WATCHKEEPER_PARAM_DRY"] == "yes"
    assert run_env(vault, other)["WATCHKEEPER_PARAM_DAY"] == "today"
    followed = run_cli("run", "report", "-p", "day=d3", "--wait", "--follow", *v)
    assert followed.returncode == 0, followed.stderr
    assert "token=***" in followed.stdout
    assert run_env(vault, run_id_of(followed.stdout))["WATCHKEEPER_PARAM_DAY"] == "d3"

    # history --json carries them too.
    listed = json.loads(run_cli("history", "--job", "report", "--json", *v).stdout)
    assert {run["params"]["day"] for run in listed} == {"2026-12-01", "today", "d3"}


def test_run_with_params_locally(make_vault) -> None:
    vault = make_vault(JOBS)
    done = run_cli("run", "report", "-p", "day=2027-01-02", "--vault", str(vault))
    assert done.returncode == 0, done.stderr
    assert "(locally)" in done.stdout
    run_id = run_id_of(done.stdout)
    assert run_env(vault, run_id)["WATCHKEEPER_PARAM_DAY"] == "2027-01-02"
    assert run_env(vault, run_id)["WATCHKEEPER_PARAM_API_TOKEN"] == "default-token"
    assert final_records(vault)[run_id]["params"]["day"] == "2027-01-02"
    # A job without params: no variables, no `params` in its line.
    plain = run_cli("run", "plain", "--vault", str(vault))
    plain_id = run_id_of(plain.stdout)
    assert (vault / f"plain-{plain_id}.txt").read_text().strip() == "0"
    assert "params" not in final_records(vault)[plain_id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "-p", "day"), "cannot run report: -p 'day': expected NAME=VALUE"),
        (("report", "-p", "=x"), "cannot run report: -p '=x': expected NAME=VALUE"),
        (
            ("report", "-p", "dya=1"),
            "cannot run report: job 'report' has no parameter 'dya' (did you mean",
        ),
        (
            ("plain", "-p", "day=1"),
            "cannot run plain: job 'plain' takes no parameters (its config declares no "
            "params); got day",
        ),
        (("report", "-p", "day=" + "x" * 1001), "a value of 1,001 characters; at most 1,000"),
    ],
)
@pytest.mark.parametrize("keeper", [False, True], ids=["locally", "through-daemon"])
def test_bad_params_are_refused_with_exit_2_before_anything_runs(
    make_vault, daemon, args: tuple[str, ...], message: str, keeper: bool
) -> None:
    vault = make_vault(JOBS)
    if keeper:
        daemon(vault)
    for extra in ((), ("--wait",), ("--wait", "--follow")):
        done = run_cli("run", *args, *extra, "--vault", str(vault))
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert [line for line in history_lines(vault) if line["trigger"] == "manual"] == []


def test_the_keeper_refuses_bad_params_on_the_socket_too(make_vault, daemon) -> None:
    from watchkeeper.core.control_client import Connection
    from watchkeeper.core.control_protocol import ControlFailed

    vault = make_vault(JOBS)
    daemon(vault)
    with Connection(vault, 10.0) as connection:
        for params, words in (
            ({"nope": "1"}, "has no parameter 'nope'"),
            ({"day": 5}, "parameter 'day': expected a string, got 5"),
            (["day=1"], "run params must be an object"),
        ):
            with pytest.raises(ControlFailed, match=words):
                connection.request("run", job="report", params=params)
        with pytest.raises(ControlFailed, match="takes no parameters"):
            connection.request("run", job="plain", params={"day": "1"})
    assert [line for line in history_lines(vault) if line["trigger"] == "manual"] == []


def test_scheduled_runs_and_retries_use_the_defaults_and_the_given_values(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.tick]
        command = ["sh", "-c", "echo $WATCHKEEPER_PARAM_DAY >> days.txt"]
        every = "100ms"
        params = { day = "today" }
        [jobs.flaky]
        command = ["sh", "-c", "echo $WATCHKEEPER_PARAM_DAY-$WATCHKEEPER_TRIGGER >>f.txt; false"]
        retries = 1
        retry_delay = "0s"
        params = { day = "today" }
        """
    )
    done = run_cli("--once", "--vault", str(vault))
    assert done.returncode in (0, 1), done.stderr
    assert (vault / "days.txt").read_text().split() == ["today"]
    # --follow waits for the retry too.
    failed = run_cli("run", "flaky", "-p", "day=d9", "--wait", "--follow", "--vault", str(vault))
    assert failed.returncode == 1, failed.stderr
    assert (vault / "f.txt").read_text().split() == ["d9-manual", "d9-retry"]
    finals = [r for r in final_records(vault).values() if r["taskId"] == "flaky"]
    assert sorted(r["attempt"] for r in finals) == [1, 2]
    assert all(r["params"] == {"day": "d9"} for r in finals)
