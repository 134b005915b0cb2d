"""`watchkeeper run JOB [--wait] [--follow]` and `cancel RUN_ID`: through the running
keeper when there is one, else (run) in this process. No typer here: the quick commands
run it (tui/cli/fast.py); tui/cli/app.py declares the options."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from watchkeeper.tui.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_LOCKED,
    EXIT_NO_KEEPER,
    EXIT_OK,
    EXIT_USAGE,
    acquire_lock,
    ask,
    duration_text,
    echo,
    fail,
    keeper_link,
    open_config,
    settle,
    through,
    unknown_job,
)

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.control_client import Connection

FOLLOWED_EVENTS = ["run_started", "run_finished", "log_line"]


def outcome_line(record: dict[str, Any], where: str) -> str:
    from watchkeeper.core.history_format import status_label

    attempt = f" (attempt {record['attempt']})" if record.get("attempt", 1) > 1 else ""
    return (
        f"{status_label(record['status'])}  {record['taskId']}  run {record['id']}{attempt}"
        f"  {duration_text(record['duration'])}  ({where})"
        + (f"  {record['error']}" if record["error"] else "")
    )


def exit_code(record: dict[str, Any]) -> int:
    return EXIT_OK if record["status"] == "success" else EXIT_JOB_FAILED


class RunFollower:
    """Prints one run's output as the keeper's events bring it, says when a retry is
    coming, and follows the retry too, until an attempt ends with no retry after it.

    Output lines are told apart by job, not by run: with `overlap = "allow"`, lines of
    another run of the same job in flight at the same time are printed too.
    """

    def __init__(self, job: str, retries: int, where: str) -> None:
        self.job = job
        self.retries = retries
        self.where = where
        self.run_id: str | None = None
        self.running = False
        self.retry_of: int | None = None  # the attempt whose retry is awaited
        self.final: dict[str, Any] | None = None

    def feed(self, kind: str, data: dict[str, Any]) -> bool:
        """One event; true once the followed run (and its retries) ended."""
        if kind == "log_line":
            source, line = data.get("source"), data.get("line", "")
            if source == self.job and self.running:
                echo(line)
            elif (
                source == "keeper" and line.startswith(f"{self.job}: attempt ") and "retry" in line
            ):
                echo(f"↻ {line}")
        elif kind == "run_started":
            retry = (
                self.retry_of is not None
                and data.get("taskId") == self.job
                and data.get("trigger") == "retry"
                and data.get("attempt") == self.retry_of + 1
            )
            if data.get("id") == self.run_id or retry:
                self.run_id, self.running, self.retry_of = data["id"], True, None
        elif kind == "run_finished" and data.get("id") == self.run_id:
            self.running = False
            echo(outcome_line(data, self.where))
            self.final = data
            # The keeper retries a failed or timed-out attempt while attempts remain.
            if data["status"] in ("failure", "timeout") and data["attempt"] <= self.retries:
                self.retry_of = data["attempt"]
                return False
            return True
        elif kind == "resync":
            echo("watchkeeper: fell behind the keeper's events; lines may be missing", err=True)
        return False


def run(
    vault: Path | None,
    job: str,
    wait: bool = False,
    follow: bool = False,
    param: Sequence[str] = (),
) -> NoReturn:
    """`watchkeeper run JOB [-p NAME=VALUE]...`; `vault`: the --vault flag."""
    from watchkeeper.core.params import ParamError, check_given, parse_words

    config = open_config(vault)
    if follow and not wait:
        raise fail("--follow goes with --wait")
    if job not in config.jobs:
        raise unknown_job(config, job)
    try:
        params = check_given(config.jobs[job], parse_words(param))
    except ParamError as error:
        raise fail(f"cannot run {job}: {error}") from None
    connection, unreachable = keeper_link(config.vault)
    if connection is not None:
        with connection:
            if follow:
                _follow_through(connection, config, job, params)
            _run_through(connection, job, wait, params)
    if unreachable:
        raise fail(f"cannot run {job}: {unreachable}", EXIT_LOCKED)
    if config.cluster is not None:
        # A run outside the leader would escape the lease and the cluster's history.
        raise fail(
            f"cannot run {job}: no keeper of cluster {config.cluster.name} runs on this "
            "host to ask: start one with `watchkeeper --daemon`",
            EXIT_NO_KEEPER,
        )
    raise SystemExit(_run_locally(config, job, follow, params))


def _import_asyncio_without_tls(config: Config) -> None:
    """asyncio for a keeper in this process, without ssl when no job is an http job.

    asyncio imports ssl (some 3 ms of a local run) only to offer TLS on the loop, which
    only an http job's https calls (aiohttp, on the loop) use. Notifications go out
    through urllib on a thread, which imports ssl itself: once asyncio is imported, ssl
    is importable as ever. A local run never reloads the config, so no http job comes."""
    taken = "asyncio" in sys.modules or "ssl" in sys.modules
    if taken or any(job.http is not None for job in config.jobs.values()):
        return  # the caller imports asyncio, ssl and all
    sys.modules["ssl"] = None  # type: ignore[assignment]  # asyncio's `import ssl` fails
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def _run_locally(config: Config, job: str, follow: bool, params: dict[str, str]) -> int:
    _import_asyncio_without_tls(config)
    import asyncio

    from watchkeeper.core.keeper import Keeper

    settle()
    lock = acquire_lock(config.vault)
    keeper = Keeper(config, lock)
    follower = RunFollower(job, config.jobs[job].retries, "locally")
    outcome: dict = {}

    async def drive() -> None:
        subscription = keeper.bus.subscribe(maxsize=100_000)
        await keeper.start()
        run_id = keeper.run_now(job, params=params or None)
        if follow:
            follower.run_id = run_id
            echo(f"started run {run_id} of {job} (locally)")
            while True:
                got = await subscription.get()
                if follower.feed(got.kind, got.data):
                    break
            await keeper.stop()
            return
        await keeper.wait_idle()
        await keeper.stop()
        while (event := subscription.get_nowait()) is not None:
            if event.kind == "run_finished" and event.data["id"] == run_id:
                outcome.update(event.data)

    try:
        asyncio.run(drive())
    finally:
        lock.release()
    if follow:
        assert follower.final is not None
        return exit_code(follower.final)
    echo(outcome_line(outcome, "locally"))
    return exit_code(outcome)


def _run_through(
    connection: Connection, job: str, wait: bool, params: dict[str, str]
) -> NoReturn:
    timeout = None if wait else 10.0
    if wait:
        settle()
    try:
        answer = ask(connection, "run", timeout, job=job, wait=wait, **_given(params))
    except KeyboardInterrupt:
        echo(f"stopped waiting; the run of {job} goes on in keeper pid {connection.pid}")
        raise SystemExit(EXIT_INTERRUPTED) from None
    if not wait:
        echo(f"started run {answer['run_id']} of {job} ({through(connection)})")
        raise SystemExit(EXIT_OK)
    record = answer["record"]
    echo(outcome_line(record, through(connection)))
    raise SystemExit(exit_code(record))


def _given(params: dict[str, str]) -> dict[str, Any]:
    """The request's `params`, sent only when given: a request without them reads as it
    always did."""
    return {"params": params} if params else {}


def _follow_through(
    connection: Connection, config: Config, job: str, params: dict[str, str]
) -> NoReturn:
    """Subscribe first, then start the run: every event of the run is in the stream."""
    from watchkeeper.core.control_client import subscribe
    from watchkeeper.core.control_protocol import ControlError

    settle()
    where = through(connection)
    try:
        stream, _ = subscribe(config.vault, FOLLOWED_EVENTS)
    except ControlError as error:
        raise fail(f"cannot follow the run: {error}") from None
    follower = RunFollower(job, config.jobs[job].retries, where)
    with stream:
        follower.run_id = ask(connection, "run", job=job, **_given(params))["run_id"]
        echo(f"started run {follower.run_id} of {job} ({where})")
        try:
            while True:
                message = stream.read()
                if follower.feed(message.get("event", ""), message.get("data") or {}):
                    break
        except KeyboardInterrupt:
            echo(
                f"stopped following; run {follower.run_id} of {job} goes on in keeper "
                f"pid {connection.pid}"
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        except (OSError, ValueError):
            last = follower.final
            raise fail(
                f"keeper pid {connection.pid} went away while run {follower.run_id} of {job} "
                + ("ran" if last is None else f"waited to retry (last: {last['status']})"),
                EXIT_JOB_FAILED,
            ) from None
    assert follower.final is not None
    raise SystemExit(exit_code(follower.final))


def cancel(vault: Path | None, run_id: str) -> None:
    """`watchkeeper cancel RUN_ID`; `vault`: the --vault flag."""
    config = open_config(vault)
    connection, unreachable = keeper_link(config.vault)
    if connection is None:
        raise fail(
            f"cannot cancel run {run_id}: "
            + (unreachable or "no keeper is running, so no run is in flight"),
            EXIT_LOCKED if unreachable else EXIT_USAGE,
        )
    with connection:
        ask(connection, "cancel", run_id=run_id)
        echo(f"cancelled run {run_id} ({through(connection)})")
