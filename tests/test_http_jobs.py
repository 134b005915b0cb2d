"""HTTP jobs (core/http_job.py) against a real local server that fails on demand: the
record and the job log of a success, an unexpected status, a timeout, a refused
connection; retries; the breaker's transitions in a keeper; secrets masked; the config's
errors; and, through the real CLI and a daemon, `jobs --json` and metrics.prom."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from conftest import finals, finish, run_cli, started_keeper, until, wait_for

from watchkeeper.core.config import ConfigError, load_config
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire
from watchkeeper.core.seams import ManualClock


def job_log(vault: Path, job: str) -> str:
    return (vault / "Logs" / "jobs" / f"{job}.log").read_text()


def everything_written(vault: Path) -> str:
    """Every file the keeper wrote under Logs/ (history, job logs, its own log)."""
    return "".join(
        path.read_text(errors="replace") for path in (vault / "Logs").rglob("*") if path.is_file()
    )


async def run_one(keeper: Keeper, job: str) -> dict:
    run_id = keeper.run_now(job)
    assert await keeper.wait_idle(15)
    [record] = [r for r in finals(keeper.vault, job) if r["id"] == run_id]
    return record


async def test_a_call_records_its_status_duration_and_an_excerpt(make_vault, endpoint) -> None:
    endpoint.body = b"all good here\n"
    vault = make_vault(
        f"""
        [jobs.ping]
        http = {{ url = "{endpoint.url}/health", method = "post", body = "hi", timeout = "5s" }}
        """
    )
    keeper = await started_keeper(vault)
    record = await run_one(keeper, "ping")
    await finish(keeper)
    assert (record["status"], record["exitCode"], record["error"]) == ("success", 200, None)
    assert record["duration"] is not None and record["duration"] >= 0
    assert endpoint.requests[0][:2] == ("POST", "/health") and endpoint.requests[0][3] == b"hi"
    log = job_log(vault, "ping")
    assert f"POST {endpoint.url}/health → 200 OK in " in log
    assert "all good here" in log


async def test_a_status_outside_expect_fails_with_the_status_as_exit_code(
    make_vault, endpoint
) -> None:
    endpoint.body = b"x" * 5000  # more than the excerpt: cut, and said so
    vault = make_vault(
        f"""
        [jobs.strict]
        http = {{ url = "{endpoint.url}/", expect = [204] }}
        """
    )
    keeper = await started_keeper(vault)
    record = await run_one(keeper, "strict")
    await finish(keeper)
    assert (record["status"], record["exitCode"]) == ("failure", 200)
    assert record["error"] == "HTTP 200, expected 204: " + "x" * 200
    log = job_log(vault, "strict")
    assert "→ 200 OK in " in log and "(expected 204)" in log
    assert "x" * 1023 + " …" in log and "x" * 1025 not in log


async def test_a_slow_endpoint_times_out_and_a_closed_port_fails(make_vault, endpoint) -> None:
    endpoint.delay = 30
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    vault = make_vault(
        f"""
        [jobs.slow]
        http = {{ url = "{endpoint.url}/slow", timeout = "300ms" }}

        [jobs.gone]
        http = {{ url = "http://127.0.0.1:{closed_port}/" }}
        """
    )
    keeper = await started_keeper(vault)
    slow = await run_one(keeper, "slow")
    gone = await run_one(keeper, "gone")
    await finish(keeper)
    assert (slow["status"], slow["exitCode"], slow["error"]) == (
        "timeout",
        None,
        "timed out after 300ms",
    )
    assert 250 <= slow["duration"] < 5000
    assert (gone["status"], gone["exitCode"]) == ("failure", None)
    assert gone["error"].startswith("connection failed: ")
    assert "connection failed" in job_log(vault, "gone")


async def test_a_call_in_flight_is_cancelled_and_frees_a_probe(make_vault, endpoint) -> None:
    endpoint.delay = 30
    vault = make_vault(
        f"""
        [jobs.held]
        http = {{ url = "{endpoint.url}/" }}
        breaker = {{ failures = 1, cooldown = "1h" }}
        """
    )
    keeper = await started_keeper(vault)
    run_id = keeper.run_now("held")
    await until(lambda: len(endpoint.requests) == 1)
    assert keeper.cancel(run_id, "enough")
    assert await keeper.wait_idle(15)
    [record] = finals(vault, "held")
    assert (record["status"], record["exitCode"], record["error"]) == ("cancelled", None, "enough")
    assert keeper.breakers.view("held")["state"] == "closed"  # a cancel proves nothing
    await finish(keeper)


async def test_failed_calls_are_retried_with_the_jobs_backoff(make_vault, endpoint) -> None:
    endpoint.statuses.extend([503, 500])
    vault = make_vault(
        f"""
        [jobs.flaky]
        http = {{ url = "{endpoint.url}/" }}
        retries = 3
        retry_delay = "0s"
        """
    )
    keeper = await started_keeper(vault)
    keeper.run_now("flaky")
    await until(lambda: any(r["status"] == "success" for r in finals(vault, "flaky")))
    await finish(keeper)
    records = sorted(finals(vault, "flaky"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["exitCode"]) for r in records] == [
        (1, "failure", 503),
        (2, "failure", 500),
        (3, "success", 200),
    ]
    assert len(endpoint.requests) == 3


async def test_breaker_opens_probes_half_open_and_closes_or_opens_again(
    make_vault, endpoint
) -> None:
    endpoint.status = 503
    vault = make_vault(
        f"""
        [jobs.api]
        http = {{ url = "{endpoint.url}/" }}
        breaker = {{ failures = 2, cooldown = "5m" }}
        """
    )
    clock = ManualClock()
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault), clock=clock)
    await keeper.start()

    def breaker() -> dict:
        return keeper.job_view(keeper.jobs["api"])["breaker"]

    assert breaker() == {"state": "closed", "failures": 0, "open_until": None}
    assert (await run_one(keeper, "api"))["status"] == "failure"
    assert breaker()["state"] == "closed"
    assert (await run_one(keeper, "api"))["status"] == "failure"
    assert breaker()["state"] == "open" and breaker()["open_until"] is not None
    skipped = await run_one(keeper, "api")
    assert skipped["status"] == "skipped"
    assert skipped["error"].startswith("circuit open until ")
    assert len(endpoint.requests) == 2  # the skipped run called nobody

    clock.advance(300)
    assert breaker()["state"] == "half-open"
    assert (await run_one(keeper, "api"))["status"] == "failure"  # the probe fails
    assert breaker()["state"] == "open"
    assert (await run_one(keeper, "api"))["status"] == "skipped"

    clock.advance(300)
    endpoint.status = 200
    assert (await run_one(keeper, "api"))["status"] == "success"  # the probe succeeds
    assert breaker() == {"state": "closed", "failures": 0, "open_until": None}
    assert (await run_one(keeper, "api"))["status"] == "success"
    await finish(keeper)
    assert len(endpoint.requests) == 5
    log = (vault / "Logs" / "watchkeeper.log").read_text()
    assert "api: circuit open for 5m00s after 2 failure(s) in a row" in log
    assert "api: circuit closed" in log


async def test_a_probe_in_flight_keeps_other_runs_out(make_vault, endpoint) -> None:
    endpoint.status = 500
    vault = make_vault(
        f"""
        [jobs.api]
        http = {{ url = "{endpoint.url}/" }}
        breaker = {{ failures = 1, cooldown = "1m" }}
        overlap = "allow"
        """
    )
    clock = ManualClock()
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault), clock=clock)
    await keeper.start()
    await run_one(keeper, "api")
    clock.advance(60)
    endpoint.delay, endpoint.status = 30, 200
    keeper.run_now("api")  # the probe, held by the server
    await until(lambda: len(endpoint.requests) == 2)
    second = await _skipped_at_once(keeper)
    assert second["error"] == "circuit half-open: a probe is in flight"
    endpoint.released.set()
    assert await keeper.wait_idle(15)
    await finish(keeper)
    assert keeper.breakers.view("api")["state"] == "closed"


async def _skipped_at_once(keeper: Keeper) -> dict:
    run_id = keeper.run_now("api")
    await until(lambda: any(r["id"] == run_id for r in finals(keeper.vault, "api")))
    [record] = [r for r in finals(keeper.vault, "api") if r["id"] == run_id]
    return record


async def test_secrets_in_headers_and_the_url_are_masked(
    make_vault, endpoint, monkeypatch
) -> None:
    monkeypatch.setenv("PLAIN_VALUE", "plain-value-in-url")
    vault = make_vault(
        f"""
        [jobs.echo]
        http = {{ url = "{endpoint.url}/echo?q=${{PLAIN_VALUE}}", expect = [299], headers = {{ Authorization = "Bearer ${{API_TOKEN}}", X-Api-Key = "literal-key-999999" }} }}
        env = {{ API_TOKEN = "tok-abcdef-123456" }}

        [jobs.login]
        http = {{ url = "http://alice:pw-secret-77@{endpoint.url.removeprefix("http://")}/echo" }}
        """  # noqa: E501
    )
    keeper = await started_keeper(vault)
    echo = await run_one(keeper, "echo")
    login = await run_one(keeper, "login")
    await finish(keeper)
    sent = {path: headers for _, path, headers, _ in endpoint.requests}
    assert sent["/echo?q=plain-value-in-url"]["Authorization"] == "Bearer tok-abcdef-123456"
    assert sent["/echo?q=plain-value-in-url"]["X-Api-Key"] == "literal-key-999999"
    basic = base64.b64encode(b"alice:pw-secret-77").decode()
    assert sent["/echo"]["Authorization"] == f"Basic {basic}"
    assert echo["status"] == "failure" and "Authorization: *** X-Api-Key: ***" in echo["error"]
    assert login["status"] == "success"
    written = everything_written(vault)
    for secret in ("tok-abcdef-123456", "literal-key-999999", "pw-secret-77", basic):
        assert secret not in written
    assert "X-Api-Key: ***" in job_log(vault, "echo")
    assert "http://alice:***@127.0.0.1:" in job_log(vault, "login")
    assert "Authorization: Basic ***" in job_log(vault, "login")


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ('command = "true"\nhttp = { url = "http://h/" }', "http", "either 'command' or 'http'"),
        ('http = { method = "GET" }', "http", "missing required key 'url'"),
        ('http = { url = "ftp://h/" }', "http", "url: expected an http:// or https:// URL"),
        ('http = { url = "http://h/", expect = [99] }', "http", "expect: expected a list"),
        ('http = { url = "http://h/", method = "GOT" }', "http", "did you mean 'GET'?"),
        ('http = { url = "http://h/", verb = "GET" }', "http", "unknown key 'verb'"),
        ('http = { url = "http://h/", headers = { "a b" = "x" } }', "http", "header name"),
        ('http = { url = "http://h/", timeout = "0s" }', "http", "timeout: expected a duration"),
        ('command = "true"\nbreaker = { failures = 2, cooldown = "1m" }', "breaker", "guards"),
        ('http = { url = "http://h/" }\nbreaker = { failures = 0, cooldown = "1m" }', "breaker",
         "failures: expected an integer from 1"),
        ('http = { url = "http://h/" }\nbreaker = { failures = 2 }', "breaker",
         "missing required key 'cooldown'"),
    ],
)
def test_config_errors_name_the_file_line_and_key(
    make_vault, body: str, key: str, message: str
) -> None:
    vault = make_vault("[keeper]\n\n[jobs.x]\n" + body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(vault / "watchkeeper.toml")
    [issue] = caught.value.issues
    lines = (vault / "watchkeeper.toml").read_text().splitlines()
    assert issue.key == f"jobs.x.{key}"
    assert lines[issue.line - 1].startswith(f"{key} = ")
    assert message in issue.message
    assert str(issue).startswith(f"{vault / 'watchkeeper.toml'}:{issue.line}: jobs.x.{key}: ")


def test_jobs_json_the_table_and_metrics_show_the_breaker(make_vault, endpoint, daemon) -> None:
    endpoint.status = 500
    vault = make_vault(
        f"""
        [jobs.api]
        http = {{ url = "{endpoint.url}/" }}
        breaker = {{ failures = 1, cooldown = "1h" }}

        [jobs.plain]
        http = {{ url = "{endpoint.url}/" }}
        """
    )
    daemon(vault)
    ran = run_cli("run", "api", "--wait", "--vault", str(vault))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    listed = run_cli("jobs", "--json", "--vault", str(vault))
    assert listed.returncode == 0, listed.stderr
    views = {view["name"]: view for view in json.loads(listed.stdout)}
    assert views["api"]["breaker"]["state"] == "open"
    assert views["api"]["breaker"]["failures"] == 1
    assert "breaker" not in views["plain"]
    table = run_cli("jobs", "--vault", str(vault))
    assert "circuit open until" in table.stdout
    metrics = vault / "Logs" / "metrics.prom"

    def open_line() -> bool:
        return metrics.exists() and 'watchkeeper_breaker_open{job_name="api"} 1' in (
            metrics.read_text()
        )

    wait_for(open_line, timeout=15)
    assert 'breaker_open{job_name="plain"}' not in metrics.read_text()


async def test_http_and_command_runs_share_a_batch_and_an_unset_variable_is_named(
    make_vault, endpoint
) -> None:
    vault = make_vault(
        f"""
        [jobs.call]
        http = {{ url = "{endpoint.url}/", headers = {{ X-Key = "${{WK_TEST_UNSET_VAR}}" }} }}

        [jobs.good]
        http = {{ url = "{endpoint.url}/" }}

        [jobs.cmd]
        command = ["sh", "-c", "echo from-a-child"]
        """
    )
    keeper = await started_keeper(vault)
    ids = {job: keeper.run_now(job) for job in ("call", "good", "cmd")}  # one loop turn
    assert await keeper.wait_idle(15)
    await finish(keeper)
    records = {record["taskId"]: record for record in finals(vault)}
    assert {job: records[job]["id"] for job in ids} == ids
    assert (records["call"]["status"], records["call"]["error"]) == (
        "failure",
        "${WK_TEST_UNSET_VAR} is not set",
    )
    assert (records["good"]["status"], records["good"]["exitCode"]) == ("success", 200)
    assert (records["cmd"]["status"], records["cmd"]["exitCode"]) == ("success", 0)
    assert "from-a-child" in job_log(vault, "cmd")
    assert len(endpoint.requests) == 1
