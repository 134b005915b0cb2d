"""Notifications through real channels: a local HTTP server (webhook, Apprise json://),
a command writing its stdin to a file, a real keeper's runs and the real CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import finals, finish, keeper_log, run_cli, started_keeper, until, write_past_run
from notify_kit import endpoint

from watchkeeper.core.config import ConfigError, load_config


async def serving(vault: Path):  # type: ignore[no-untyped-def]
    keeper = await started_keeper(vault)
    return keeper, asyncio.create_task(keeper.serve())


def test_unknown_channels_and_events_are_config_errors_at_their_line(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        notify = ["opz"]

        [notify.ops]
        webhook = "http://127.0.0.1:9/x"
        events = ["failure", "failed"]

        [notify.both]
        webhook = "http://127.0.0.1:9/x"
        command = ["cat"]

        [jobs.a]
        command = ["true"]
        notify = ["pager"]
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(vault / "watchkeeper.toml")
    shown = [str(issue).split("watchkeeper.toml:", 1)[1] for issue in caught.value.issues]
    assert shown == [
        "3: keeper.notify: unknown notify channel 'opz' (did you mean 'ops'?)",
        "7: notify.ops.events: unknown event 'failed' (did you mean 'failure'?): one of "
        "failure, retries_exhausted, recovered, quota_refused, missed, lost",
        "9: notify.both: needs exactly one of url, webhook, command; got both webhook and "
        "command",
        "15: jobs.a.notify: unknown notify channel 'pager'; channels: both, ops",
    ]


async def test_webhook_failure_then_recovered_with_the_url_secrets_masked_in_the_log(
    make_vault,
) -> None:
    with endpoint() as hook:
        url = (
            f"http://user:pa55word@127.0.0.1:{hook.port}/hooks/T0001/"
            "abcdefghijklmnopqrstuvwxyz?token=sekrit-value"
        )
        vault = make_vault(
            f"""
            [keeper]
            notify = ["hook"]
            [notify.hook]
            webhook = "{url}"
            rate_window = "0s"
            [jobs.check]
            command = ["sh", "-c", "test -f ok"]
            """
        )
        keeper, task = await serving(vault)
        keeper.run_now("check")
        await until(lambda: len(hook.bodies()) >= 1)
        (vault / "ok").touch()
        keeper.run_now("check")
        await until(lambda: len(hook.bodies()) >= 2)
        await finish(keeper, task)
    failure, recovered = hook.bodies()
    assert failure["event"] == "failure" and failure["count"] == 1
    assert failure["events"][0]["job"] == "check"
    assert failure["events"][0]["exitCode"] == 1
    assert failure["text"].startswith(f"watchkeeper [{vault.name}] failure: job check run ")
    assert recovered["event"] == "recovered"
    assert recovered["events"][0]["status"] == "success"
    assert hook.requests[0][0] == "/hooks/T0001/abcdefghijklmnopqrstuvwxyz?token=sekrit-value"
    assert hook.authorizations[0] == "Basic " + base64.b64encode(b"user:pa55word").decode()
    log = keeper_log(vault)
    assert "notify hook: failure sent to webhook http://user:***@127.0.0.1:" in log
    assert "/hooks/T0001/***?token=*** (attempt 1, HTTP 200)" in log
    for secret in ("pa55word", "sekrit-value", "abcdefghijklmnopqrstuvwxyz"):
        assert secret not in log


async def test_apprise_json_url_reaches_the_local_server(make_vault) -> None:
    pytest.importorskip("apprise")
    with endpoint() as hook:
        vault = make_vault(
            f"""
            [notify.apprise]
            url = "json://127.0.0.1:{hook.port}/apprise"
            [jobs.broken]
            command = ["false"]
            notify = ["apprise"]
            """
        )
        keeper, task = await serving(vault)
        keeper.run_now("broken")
        await until(lambda: hook.bodies())
        await finish(keeper, task)
    (path, body), = hook.requests
    assert path == "/apprise"
    assert body["title"] == "watchkeeper: failure"
    assert "failure: job broken run " in body["message"]
    assert "notify apprise: failure sent to url json://127.0.0.1:" in keeper_log(vault)


async def test_command_channel_gets_the_event_on_stdin_and_only_the_events_it_wants(
    make_vault,
) -> None:
    vault = make_vault(
        """
        [notify.pager]
        command = ["sh", "page.sh", "paged.jsonl"]
        events = ["retries_exhausted"]
        rate_window = "0s"
        [jobs.flaky]
        command = ["false"]
        retries = 1
        retry_delay = "0s"
        notify = ["pager"]
        """
    )
    (vault / "page.sh").write_text('cat >> "$1"\necho >> "$1"\n')
    keeper, task = await serving(vault)
    keeper.run_now("flaky")
    paged = vault / "paged.jsonl"
    await until(lambda: paged.exists() and paged.read_text().endswith("\n"))
    await until(lambda: "notify pager: retries_exhausted sent to command sh" in keeper_log(vault))
    await finish(keeper, task)
    (message,) = [json.loads(line) for line in paged.read_text().splitlines() if line]
    assert message["event"] == "retries_exhausted"
    assert message["events"][0]["attempt"] == 2
    assert len(finals(vault, "flaky")) == 2  # two failures, one message: the one it wants


async def test_lost_missed_and_quota_refused_events(make_vault) -> None:
    with endpoint() as hook:
        vault = make_vault(
            f"""
            [keeper]
            notify = ["hook"]
            catch_up = "none"
            [notify.hook]
            webhook = "{hook.url()}"
            rate_window = "0s"
            events = ["lost", "missed", "quota_refused"]
            [jobs.capped]
            command = ["true"]
            every = "100ms"
            max_per_hour = 1
            [jobs.slow]
            command = ["sleep", "5"]
            every = "100ms"
            [jobs.held]
            command = ["true"]
            every = "100ms"
            [jobs.hourly]
            command = ["true"]
            every = "1h"
            """
        )
        write_past_run(vault, "capped", timedelta(minutes=1), "running")
        write_past_run(vault, "hourly", timedelta(hours=2))
        keeper = await started_keeper(vault)
        keeper.pause("held")
        task = asyncio.create_task(keeper.serve())

        def seen() -> set[tuple[str, str, str]]:
            return {
                (event["event"], event["job"], event["error"] or "")
                for body in hook.bodies()
                for event in body["events"]
            }

        wanted = {
            ("lost", "capped"),
            ("missed", "hourly"),
            ("quota_refused", "capped"),
            ("missed", "slow"),
            ("missed", "held"),
        }
        await until(lambda: wanted <= {(kind, job) for kind, job, _ in seen()})
        keeper.hurry()
        await finish(keeper, task)
    reasons = {(kind, job): error for kind, job, error in seen()}
    assert "stopped while this run was in flight" in reasons["lost", "capped"]
    assert reasons["missed", "hourly"] == "slot missed: no keeper was running"
    assert reasons["missed", "held"] == "slot missed: paused"
    assert "overlap = skip" in reasons["missed", "slow"]
    assert reasons["quota_refused", "capped"].startswith("quota: job capped max_per_hour 1")


async def test_a_failure_storm_sends_a_handful_of_digests_covering_every_failure(
    make_vault,
) -> None:
    with endpoint() as hook:
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "{hook.url()}"
            rate_window = "1s"
            [jobs.flap]
            command = ["false"]
            every = "100ms"
            notify = ["hook"]
            """
        )
        began = time.monotonic()
        keeper, task = await serving(vault)
        await until(lambda: len(finals(vault, "flap")) >= 25)
        await finish(keeper, task)
        elapsed = time.monotonic() - began
    failures = [record for record in finals(vault, "flap") if record["status"] == "failure"]
    bodies = hook.bodies()
    # One message a window, plus what waited when the keeper stopped.
    assert len(bodies) <= elapsed / 1.0 + 2
    assert len(bodies) < len(failures) / 3
    assert sum(body["count"] for body in bodies) == len(failures)
    digest = next(body for body in bodies if body["event"] == "digest")
    assert f"events within 1s: failure x{digest['count']} (flap)" in digest["text"]
    assert "more" in digest["text"] or digest["count"] <= 10


async def test_a_webhook_that_does_not_answer_never_holds_up_the_slots(make_vault) -> None:
    with endpoint() as hook:
        hook.hold.clear()  # every request waits until the test lets it go
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "{hook.url()}"
            rate_window = "0s"
            attempts = 1
            [jobs.flap]
            command = ["false"]
            every = "100ms"
            notify = ["hook"]
            [jobs.tick]
            command = ["true"]
            every = "100ms"
            """
        )
        keeper, task = await serving(vault)
        await until(lambda: hook.arrived >= 1)
        ticks = len(finals(vault, "tick"))
        await until(lambda: len(finals(vault, "tick")) >= ticks + 10)
        assert hook.arrived == 1 and not hook.requests  # still held: the tick went on
        hook.hold.set()
        await finish(keeper, task)
    starts = sorted(datetime.fromisoformat(r["startedAt"]) for r in finals(vault, "tick"))
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(starts)]
    assert max(gaps) < 1.5, gaps  # every 100 ms; a send on the loop would stall it for 10 s


def test_notify_test_command(make_vault) -> None:
    with endpoint() as hook:
        hook.statuses = [500]
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "{hook.url()}?key=hidden-key"
            attempts = 2
            [notify.dead]
            webhook = "http://127.0.0.1:9/nothing"
            attempts = 1
            """
        )
        sent = run_cli("notify", "test", "hook", "--vault", str(vault))
        dead = run_cli("notify", "test", "dead", "--vault", str(vault))
        unknown = run_cli("notify", "test", "hoook", "--vault", str(vault))
    assert sent.returncode == 0, sent.stderr
    assert "attempt 1 of 2 failed: HTTP 500" in sent.stderr
    assert "notify hook: test sent to webhook" in sent.stdout
    assert "key=***" in sent.stdout and "hidden-key" not in sent.stdout + sent.stderr
    assert [body["event"] for body in hook.bodies()] == ["test", "test"]
    assert dead.returncode == 1
    assert "notify dead: test to webhook http://127.0.0.1:9/nothing not sent" in dead.stderr
    assert unknown.returncode == 2
    assert "unknown notify channel 'hoook' (did you mean 'hook'?)" in unknown.stderr


async def test_log_retention_removes_old_rotated_logs_only(make_vault) -> None:
    vault = make_vault(
        """
        [keeper]
        log_retention_days = 2
        [jobs.a]
        command = ["true"]
        """
    )
    logs = vault / "Logs"
    old = time.time() - 3 * 86400
    files = {
        "old_job": logs / "jobs" / "a.log.1",
        "new_job": logs / "jobs" / "a.log.2",
        "live_job": logs / "jobs" / "a.log",
        "old_keeper": logs / "watchkeeper.log.3",
        "other": logs / "jobs" / "notes.txt",
    }
    for name, path in files.items():
        path.write_text(name)
        if name != "new_job":
            os.utime(path, (old, old))
    keeper = await started_keeper(vault)
    await until(lambda: "log retention (2d) removed 2 rotated log(s)" in keeper_log(vault))
    await finish(keeper)
    assert {name for name, path in files.items() if path.exists()} == {
        "new_job",
        "live_job",
        "other",
    }
