"""The `watchkeeper` command. Exit codes: 0 ok, 1 a job failed, 2 usage or config
error, 3 another keeper holds the vault."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from core.config import CONFIG_NAME, Config, ConfigError, load_config
from core.history import status_label
from core.locations import find_vault

if TYPE_CHECKING:
    from core.control import Connection

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
FAILED_STATUSES = ("failure", "timeout", "cancelled", "interrupted")
app = typer.Typer(
    name="watchkeeper",
    help="Keeps watch over a file-based task vault: runs its jobs, records every run.",
    add_completion=False,
    no_args_is_help=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

VaultOption = Annotated[
    Path | None,
    typer.Option(
        "--vault",
        help="Vault folder (else $WATCHKEEPER_VAULT, the nearest "
        "folder up holding watchkeeper.toml, or the user data dir).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Stable JSON output.")]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"watchkeeper: {message}", err=True)
    return typer.Exit(code)


def _vault(ctx: typer.Context, vault: Path | None) -> tuple[Path, str]:
    return find_vault(vault or (ctx.obj or {}).get("vault"))


def _config(ctx: typer.Context, vault: Path | None) -> Config:
    """Load the vault's config; the default vault is created with the demo on first use."""
    path, source = _vault(ctx, vault)
    config_file = path / CONFIG_NAME
    if not config_file.exists():
        if source != "default":
            raise fail(f"no {CONFIG_NAME} in {path} (from {source}): run `watchkeeper init {path}`")
        from core.scaffold import init_vault

        init_vault(path)
        typer.echo(f"watchkeeper: created the demo vault at {path}", err=True)
    try:
        return load_config(config_file)
    except ConfigError as error:
        for issue in error.issues:
            typer.echo(str(issue), err=True)
        raise fail(f"{len(error.issues)} error(s) in {config_file}") from None


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _local(iso: str | None, tz: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(tz).strftime(fmt)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(table)


def _acquire(vault: Path):
    from core.lock import LockHeld, acquire

    try:
        return acquire(vault)
    except LockHeld as held:
        raise fail(
            f"{held} (exit with `kill {held.holder.get('pid', '?')}`)", EXIT_LOCKED
        ) from None


def _keeper_link(vault: Path) -> tuple[Connection | None, str | None]:
    """A connection to the keeper running on this vault. (None, None): no keeper runs,
    act locally. (None, why): one holds the vault but cannot be reached."""
    from core.control import Connection, ControlUnavailable
    from core.lock import holder

    if holder(vault) is None:
        return None, None
    try:
        return Connection(vault), None
    except ControlUnavailable as error:
        return None, str(error)


def _through(connection: Connection) -> str:
    return f"through keeper pid {connection.pid}"


def _ask(connection: Connection, op: str, timeout: float | None = 10.0, **args: Any) -> dict:
    """One request to the keeper; a refusal, or a keeper gone mid-request, ends the command
    with its reason (exit 2)."""
    from core.control import ControlError

    try:
        return connection.request(op, timeout=timeout, **args)
    except ControlError as error:
        raise fail(f"{error} ({_through(connection)})") from None


# ---- the bare command -----------------------------------------------------------


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    vault: VaultOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Run each enabled scheduled job once, then its after chain, and exit."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --once: show what would run.")
    ] = False,
    daemon: Annotated[
        bool, typer.Option("--daemon", help="Run headless until SIGINT/SIGTERM.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Keeper up? pid, uptime; vault counts; jobs.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    ctx.obj = {"vault": vault}
    if ctx.invoked_subcommand is not None:
        if once or daemon or status:
            raise fail("--once, --daemon and --status do not go with a command")
        return
    if sum((once, daemon, status)) > 1:
        raise fail("choose one of --once, --daemon, --status")
    if dry_run and not once:
        raise fail("--dry-run goes with --once")
    if once:
        raise typer.Exit(_once(_config(ctx, vault), dry_run))
    if daemon:
        raise typer.Exit(_daemon(_config(ctx, vault)))
    if status or not sys.stdout.isatty():
        _status(_config(ctx, vault), as_json)
        return
    config = _config(ctx, vault)
    from core.control import ControlUnavailable
    from tui.app import run_console

    try:
        code = run_console(config)
    except ControlUnavailable as error:
        raise fail(f"cannot attach: {error}", EXIT_LOCKED) from None
    raise typer.Exit(code)


def _once(config: Config, dry_run: bool) -> int:
    import asyncio

    from core.keeper import Keeper, run_once

    if dry_run:
        chosen = [job for job in config.jobs.values() if job.enabled and job.scheduled]
        from core.state import load_state

        state = load_state(config.vault)
        for job in chosen:
            note = " (paused: would be left out)" if state.is_paused(job.name) else ""
            typer.echo(f"would run {job.name}: {job.trigger_summary}{note}")
        dependents = [job.name for job in config.jobs.values() if job.after and job.enabled]
        if dependents:
            typer.echo("then, as their chains succeed: " + ", ".join(dependents))
        return EXIT_OK
    lock = _acquire(config.vault)
    keeper = Keeper(config, lock)
    finished: list[dict] = []

    async def drive() -> None:
        subscription = keeper.bus.subscribe(maxsize=100_000)
        await keeper.start(files=False)
        await run_once(keeper)
        await keeper.stop()
        while (event := subscription.get_nowait()) is not None:
            if event.kind == "run_finished":
                finished.append(event.data)

    try:
        asyncio.run(drive())
    finally:
        lock.release()
    for record in finished:
        duration = f"{record['duration']} ms" if record["duration"] is not None else ""
        error = f"  {record['error']}" if record["error"] else ""
        typer.echo(f"{status_label(record['status'])}  {record['taskId']}  {duration}{error}")
    if not finished:
        typer.echo("nothing to run: no enabled scheduled job")
    failed = [record for record in finished if record["status"] in FAILED_STATUSES]
    return EXIT_JOB_FAILED if failed else EXIT_OK


def _daemon(config: Config) -> int:
    import asyncio
    import os

    from core.keeper import Keeper, run_daemon

    lock = _acquire(config.vault)
    keeper = Keeper(config, lock)
    # Under systemd, stderr is the journal: mirror the keeper log there.
    keeper.log.listeners.append(
        lambda stamp, level, message: print(f"{level:<5} {message}", file=sys.stderr, flush=True)
    )
    typer.echo(f"watchkeeper: keeper pid {os.getpid()} on {config.vault}", err=True)
    try:
        asyncio.run(run_daemon(keeper))
    finally:
        lock.release()
    return EXIT_OK


def _status(config: Config, as_json: bool) -> None:
    from core.control import ControlError
    from core.status import live_status, vault_status

    connection, unreachable = _keeper_link(config.vault)
    data = None
    if connection is not None:
        with connection, contextlib.suppress(ControlError):
            data = live_status(config, connection.request("status")["status"])
    if data is None:
        data = vault_status(config)
    if as_json:
        _print_json(data)
        return
    tz = config.keeper.tz
    keeper = data["keeper"]
    if keeper["running"]:
        from core.units import format_duration

        uptime = format_duration(keeper["uptime_s"]) if keeper["uptime_s"] is not None else "?"
        line = f"keeper: up, pid {keeper['pid']} on {keeper['hostname']}, uptime {uptime}"
        if data["source"] == "keeper":
            line += f", {keeper['state']}, {keeper['runs_in_flight']} run(s) in flight"
        else:
            line += f" (not asked: {unreachable or 'its control socket did not answer'})"
        typer.echo(line)
    else:
        typer.echo("keeper: not running (from the vault's files)")
    typer.echo(f"vault: {data['vault']}" + ("  [ALL PAUSED]" if data["paused"] else ""))
    typer.echo(
        "folders: " + "  ".join(f"{name} {info['count']}" for name, info in data["folders"].items())
    )
    typer.echo(f"today: {data['today']['ok']} ok, {data['today']['failed']} failed")
    for usage in data["quota"]:
        limit = usage["limit"] or "∞"
        frees = (
            f", next slot frees {_local(usage['next_free'], tz, '%H:%M:%S')}"
            if usage["limit"] and usage["used"] >= usage["limit"]
            else ""
        )
        typer.echo(f"quota {usage['scope']}: {usage['used']}/{limit} in the last hour{frees}")
    _jobs_table(data["jobs"], tz)


def _jobs_table(jobs: list[dict], tz: Any) -> None:
    rows = []
    for job in jobs:
        last = job["last"]
        last_text = "—"
        if last:
            when = _local(last["completedAt"] or last["startedAt"], tz, "%m-%d %H:%M:%S")
            last_text = f"{status_label(last['status'])} {when}"
        state = "paused" if job["paused"] else ("disabled" if not job["enabled"] else "")
        rows.append([job["name"], job["trigger"], _local(job["next_run"], tz), last_text, state])
    _table(["JOB", "TRIGGER", "NEXT RUN", "LAST", "STATE"], rows)


# ---- subcommands ------------------------------------------------------------------


@app.command()
def init(
    path: Annotated[Path | None, typer.Argument(help="Folder for the new vault.")] = None,
) -> None:
    """Create a vault: folders, demo scripts and a commented example config."""
    from core.scaffold import init_vault

    target = (path or Path.cwd()).expanduser().absolute()
    created = init_vault(target)
    for item in created:
        typer.echo(f"created {item}")
    if not created:
        typer.echo(f"{target} already holds a vault; nothing changed")
    typer.echo(f"next: watchkeeper --vault {target}")


@app.command()
def validate(ctx: typer.Context, vault: VaultOption = None) -> None:
    """Check the config; each error names file:line and key."""
    config = _config(ctx, vault)
    typer.echo(f"{config.path}: ok, {len(config.jobs)} job(s)")


@app.command()
def jobs(ctx: typer.Context, vault: VaultOption = None, as_json: JsonOption = False) -> None:
    """Each job: trigger, next run, last result, paused."""
    from core.control import ControlError
    from core.status import jobs_view

    config = _config(ctx, vault)
    connection, unreachable = _keeper_link(config.vault)
    view, source = None, "no keeper running: from the config, state and history files"
    if connection is not None:
        with connection, contextlib.suppress(ControlError):
            view, source = connection.request("jobs")["jobs"], _through(connection)
    if view is None:
        view = jobs_view(config)
        if unreachable:
            source = f"from the files ({unreachable})"
    if as_json:
        _print_json(view)
    else:
        _jobs_table(view, config.keeper.tz)
    # stderr: --json stays one clean document.
    typer.echo(f"watchkeeper: {source}", err=True)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from core.units import parse_duration

    try:
        return datetime.now().astimezone() - timedelta(seconds=parse_duration(value))
    except ValueError as error:
        raise fail(f"--since: {error}") from None


@app.command()
def history(
    ctx: typer.Context,
    vault: VaultOption = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only runs started this long ago or later, e.g. 24h."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    from core import history as hist

    config = _config(ctx, vault)
    if status is not None and status not in hist.STATUSES:
        raise fail(f"--status: expected one of {', '.join(hist.STATUSES)}, got {status!r}")
    if job is not None and job not in config.jobs:
        typer.echo(f"watchkeeper: note: {job!r} is not in the current config", err=True)
    result = hist.recent(
        config.vault / "Logs" / "history",
        hist.Query(job=job, status=status, since=_since(since), limit=limit),
    )
    if as_json:
        _print_json([record.to_json() for record in result.records])
    else:
        tz = config.keeper.tz
        from core.units import format_duration

        rows = [
            [
                _local(record.to_json()["startedAt"], tz),
                record.job,
                status_label(record.status),
                format_duration(record.duration_ms / 1000)
                if record.duration_ms is not None
                else "—",
                record.trigger + (f" #{record.attempt}" if record.attempt > 1 else ""),
                record.id,
                record.error or "",
            ]
            for record in result.records
        ]
        _table(["STARTED", "JOB", "STATUS", "DURATION", "TRIGGER", "RUN ID", "ERROR"], rows)
    if result.bad_lines:
        typer.echo(f"watchkeeper: skipped {result.bad_lines} unreadable history line(s)", err=True)


@app.command()
def stats(
    ctx: typer.Context,
    vault: VaultOption = None,
    since: Annotated[str, typer.Option("--since", help="Window, e.g. 24h, 7d.")] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Per job: runs, success rate, p50/p95 duration."""
    from core import history as hist

    config = _config(ctx, vault)
    start = _since(since)
    assert start is not None
    per_job = hist.stats(config.vault / "Logs" / "history", start)
    if as_json:
        jobs_json = {
            name: {
                "runs": s.runs,
                "counts": s.counts,
                "success_rate": s.success_rate,
                "p50_ms": s.p50_ms,
                "p95_ms": s.p95_ms,
                "last_run": s.last_run.to_json() if s.last_run else None,
            }
            for name, s in sorted(per_job.items())
        }
        _print_json({"since": start.isoformat(timespec="seconds"), "jobs": jobs_json})
        return
    from core.units import format_duration

    def ms(value: float | None) -> str:
        return format_duration(value / 1000) if value is not None else "—"

    rows = [
        [
            name,
            str(s.runs),
            f"{s.success_rate * 100:.1f}%" if s.success_rate is not None else "—",
            str(s.counts.get("success", 0)),
            str(sum(s.counts.get(status, 0) for status in FAILED_STATUSES)),
            str(s.counts.get("skipped", 0)),
            ms(s.p50_ms),
            ms(s.p95_ms),
        ]
        for name, s in sorted(per_job.items())
    ]
    _table(["JOB", "RUNS", "SUCCESS", "OK", "FAILED", "SKIPPED", "P50", "P95"], rows)


@app.command()
def run(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job to run now.")],
    vault: VaultOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the result (a local run always waits).")
    ] = False,
) -> None:
    """Run a job now: through the running keeper, else locally (then it always waits)."""
    import asyncio

    from core.keeper import Keeper

    config = _config(ctx, vault)
    connection, unreachable = _keeper_link(config.vault)
    if connection is not None:
        with connection:
            _run_through(connection, job, wait)
    if job not in config.jobs:
        raise fail(f"no job {job!r} in {config.path}; jobs: {', '.join(config.jobs) or 'none'}")
    if unreachable:
        raise fail(f"cannot run {job}: {unreachable}", EXIT_LOCKED)
    lock = _acquire(config.vault)
    keeper = Keeper(config, lock)
    outcome: dict = {}

    async def drive() -> None:
        subscription = keeper.bus.subscribe(maxsize=100_000)
        await keeper.start()
        run_id = keeper.run_now(job)
        await keeper.wait_idle()
        await keeper.stop()
        while (event := subscription.get_nowait()) is not None:
            if event.kind == "run_finished" and event.data["id"] == run_id:
                outcome.update(event.data)

    try:
        asyncio.run(drive())
    finally:
        lock.release()
    typer.echo(
        f"{status_label(outcome['status'])}  {job}  run {outcome['id']} (locally)"
        + (f"  {outcome['error']}" if outcome["error"] else "")
    )
    raise typer.Exit(EXIT_OK if outcome["status"] == "success" else EXIT_JOB_FAILED)


def _run_through(connection: Connection, job: str, wait: bool) -> NoReturn:
    try:
        answer = _ask(connection, "run", timeout=None if wait else 10.0, job=job, wait=wait)
    except KeyboardInterrupt:
        typer.echo(f"stopped waiting; the run of {job} goes on in keeper pid {connection.pid}")
        raise typer.Exit(130) from None
    if not wait:
        typer.echo(f"started run {answer['run_id']} of {job} ({_through(connection)})")
        raise typer.Exit(EXIT_OK)
    record = answer["record"]
    typer.echo(
        f"{status_label(record['status'])}  {job}  run {record['id']} ({_through(connection)})"
        + (f"  {record['error']}" if record["error"] else "")
    )
    raise typer.Exit(EXIT_OK if record["status"] == "success" else EXIT_JOB_FAILED)


@app.command()
def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to end (see `history`).")],
    vault: VaultOption = None,
) -> None:
    """End a run in flight, or drop one queued or waiting to retry."""
    config = _config(ctx, vault)
    connection, unreachable = _keeper_link(config.vault)
    if connection is None:
        raise fail(
            f"cannot cancel run {run_id}: "
            + (unreachable or "no keeper is running, so no run is in flight"),
            EXIT_LOCKED if unreachable else EXIT_USAGE,
        )
    with connection:
        _ask(connection, "cancel", run_id=run_id)
        typer.echo(f"cancelled run {run_id} ({_through(connection)})")


@app.command()
def requeue(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The quarantined file (in Needs_Action/).")],
    vault: VaultOption = None,
) -> None:
    """Put a quarantined file back where it came from, to be handed over again."""
    from core.handover import requeue as put_back
    from core.ledger import LEDGER_NAME, Ledger
    from core.lock import ask_keeper_to_reload

    config = _config(ctx, vault)
    root = config.vault.resolve()
    absolute = path if path.is_absolute() else Path.cwd() / path
    if not absolute.exists() and (root / path).exists():
        absolute = root / path
    try:
        location = absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        raise fail(f"{path} is not inside the vault {root}") from None
    ledger = Ledger(root / "Logs" / LEDGER_NAME)
    ledger.load()
    try:
        original = put_back(root, ledger, location)
    except (LookupError, OSError) as error:
        raise fail(str(error)) from None
    typer.echo(f"requeued {location} -> {original} ({ask_keeper_to_reload(root)})")


def main() -> None:
    app()


from tui import cli_ops, cli_service  # noqa: E402,F401  (register logs/pause/resume, service)
