"""`watchkeeper history [-f]` and `stats`: runs as the history files record them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tui.cli_common import (
    EXIT_OK,
    FAILED_STATUSES,
    JsonOption,
    VaultOption,
    check_choice,
    detach_stdout,
    duration_text,
    local_time,
    note,
    open_config,
    print_json,
    since_option,
    table,
)

if TYPE_CHECKING:
    from core.config import Config
    from core.history import RunRecord
    from core.history_follow import HistoryFollower

HEADERS = ["STARTED", "JOB", "STATUS", "DURATION", "TRIGGER", "RUN ID", "ERROR"]
# Fixed widths for followed rows, which are printed before later ones are known:
# "⚡ interrupted", "catch_up #10", and a run id (hex milliseconds-random).
FOLLOW_WIDTHS = {"STARTED": 19, "STATUS": 13, "DURATION": 8, "TRIGGER": 12, "RUN ID": 18}
POLL = 0.2
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only runs started since then: a duration back from now (24h, 7d) or a "
        "date/time in the vault's time zone (2026-12-01, 2026-12-01T08:00).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command()(history)
    app.command()(stats)


def _row(record: RunRecord, tz: Any) -> list[str]:
    from core.history import status_label

    return [
        local_time(record.to_json()["startedAt"], tz),
        record.job,
        status_label(record.status),
        duration_text(record.duration_ms),
        record.trigger + (f" #{record.attempt}" if record.attempt > 1 else ""),
        record.id,
        record.error or "",
    ]


def history(
    ctx: typer.Context,
    vault: VaultOption = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Then keep printing each record as it is written, oldest first (Ctrl-C); "
            "with --json one object a line.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first (with -f: oldest first, then each new record)."""
    from core import history as hist
    from core.suggest import did_you_mean

    config = open_config(ctx, vault)
    if status is not None:
        check_choice("--status", status, hist.STATUSES)
    if job is not None and job not in config.jobs:
        note(f"note: {job!r} is not in the current config{did_you_mean(job, config.jobs)}")
    start = since_option(since, config) if since is not None else None
    history_dir = config.vault / "Logs" / "history"
    if follow:
        # Where following starts is fixed before the backlog is read: a record written
        # in between shows twice rather than not at all.
        from core.history_follow import HistoryFollower

        follower = HistoryFollower(history_dir)
    result = hist.recent(history_dir, hist.Query(job=job, status=status, since=start, limit=limit))
    if result.bad_lines:
        note(f"skipped {result.bad_lines} unreadable history line(s)")
    if not follow:
        if as_json:
            print_json([record.to_json() for record in result.records])
        else:
            table(HEADERS, [_row(record, config.keeper.tz) for record in result.records])
        return
    try:
        _follow(config, follower, list(reversed(result.records)), job, status, as_json)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None
    except BrokenPipeError:
        detach_stdout()
        raise typer.Exit(EXIT_OK) from None


def _follow(
    config: Config,
    follower: HistoryFollower,
    backlog: list[RunRecord],
    job: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    import json
    import time

    from core.names import json_text

    widths = dict(FOLLOW_WIDTHS, JOB=max([3, *(len(name) for name in config.jobs)]))

    def show(record: RunRecord) -> None:
        if as_json:
            typer.echo(json_text(json.dumps(record.to_json(), ensure_ascii=False)))
            return
        cells = _row(record, config.keeper.tz)
        typer.echo(
            "  ".join(
                f"{cell:<{widths.get(head, 0)}}" for head, cell in zip(HEADERS, cells, strict=True)
            ).rstrip()
        )

    if not as_json:
        typer.echo("  ".join(f"{head:<{widths.get(head, 0)}}" for head in HEADERS).rstrip())
    for record in backlog:
        show(record)
    while True:
        for record in follower.poll():
            if (job is None or record.job == job) and (status is None or record.status == status):
                show(record)
        time.sleep(POLL)


def stats(
    ctx: typer.Context,
    vault: VaultOption = None,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Window: a duration back from now (24h, 7d) or a date/time in the vault's "
            "time zone (2026-12-01, 2026-12-01T08:00).",
        ),
    ] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Per job: runs, success rate, p50/p95 duration."""
    from core import history as hist

    config = open_config(ctx, vault)
    start = since_option(since, config)
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
        print_json({"since": start.isoformat(timespec="seconds"), "jobs": jobs_json})
        return
    rows = [
        [
            name,
            str(s.runs),
            f"{s.success_rate * 100:.1f}%" if s.success_rate is not None else "—",
            str(s.counts.get("success", 0)),
            str(sum(s.counts.get(status, 0) for status in FAILED_STATUSES)),
            str(s.counts.get("skipped", 0)),
            duration_text(s.p50_ms),
            duration_text(s.p95_ms),
        ]
        for name, s in sorted(per_job.items())
    ]
    table(["JOB", "RUNS", "SUCCESS", "OK", "FAILED", "SKIPPED", "P50", "P95"], rows)
