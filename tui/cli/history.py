"""`watchkeeper history [-f]` and `stats`: runs as the history files record them. No typer
here: the quick commands run it (tui/cli/fast.py); tui/cli/app.py declares the options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.tui.cli.common import (
    EXIT_OK,
    FAILED_STATUSES,
    check_choice,
    detach_stdout,
    did_you_mean,
    duration_text,
    echo,
    in_cluster,
    local_time,
    note,
    open_config,
    print_json,
    since_option,
    table,
)

if TYPE_CHECKING:
    from watchkeeper.core.config import Config
    from watchkeeper.core.history import RunRecord
    from watchkeeper.core.history_follow import HistoryFollower

HEADERS = ["STARTED", "JOB", "STATUS", "DURATION", "TRIGGER", "RUN ID", "ERROR"]
# Fixed widths for followed rows, which are printed before later ones are known:
# "⚡ interrupted", "catch_up #10", and a run id (hex milliseconds-random).
FOLLOW_WIDTHS = {"STARTED": 19, "STATUS": 13, "DURATION": 8, "TRIGGER": 12, "RUN ID": 18}
POLL = 0.2


def _row(record: RunRecord, tz: Any) -> list[str]:
    from watchkeeper.core.history import status_label

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
    vault: Path | None,
    job: str | None = None,
    status: str | None = None,
    since: str | None = None,
    limit: int = 50,
    follow: bool = False,
    as_json: bool = False,
) -> None:
    """`watchkeeper history`; `vault`: the --vault flag."""
    from watchkeeper.core import history as hist

    config = open_config(vault)
    if status is not None:
        check_choice("--status", status, hist.STATUSES)
    if job is not None and job not in config.jobs:
        note(f"note: {job!r} is not in the current config{did_you_mean(job, config.jobs)}")
    start = since_option(since, config) if since is not None else None
    history_dir = config.vault / "Logs" / "history"
    if follow:
        # Where following starts is fixed before the backlog is read: a record written
        # in between shows twice rather than not at all.
        from watchkeeper.core.history_follow import HistoryFollower

        follower = HistoryFollower(history_dir)
    query = hist.Query(job=job, status=status, since=start, limit=limit)
    if config.cluster is not None:
        result = in_cluster(config, lambda conn, name, reads: reads.recent(conn, name, query))
    else:
        result = hist.recent(history_dir, query)
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
        raise SystemExit(EXIT_OK) from None
    except BrokenPipeError:
        detach_stdout()
        raise SystemExit(EXIT_OK) from None


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

    from watchkeeper.core.names import json_text

    widths = dict(FOLLOW_WIDTHS, JOB=max([3, *(len(name) for name in config.jobs)]))

    def show(record: RunRecord) -> None:
        if as_json:
            echo(json_text(json.dumps(record.to_json(), ensure_ascii=False)))
            return
        cells = _row(record, config.keeper.tz)
        echo(
            "  ".join(
                f"{cell:<{widths.get(head, 0)}}" for head, cell in zip(HEADERS, cells, strict=True)
            ).rstrip()
        )

    if not as_json:
        echo("  ".join(f"{head:<{widths.get(head, 0)}}" for head in HEADERS).rstrip())
    for record in backlog:
        show(record)
    while True:
        for record in follower.poll():
            if (job is None or record.job == job) and (status is None or record.status == status):
                show(record)
        time.sleep(POLL)


def stats(vault: Path | None, since: str = "24h", as_json: bool = False) -> None:
    """`watchkeeper stats`; `vault`: the --vault flag."""
    from watchkeeper.core import history as hist

    config = open_config(vault)
    start = since_option(since, config)
    if config.cluster is not None:
        per_job = in_cluster(config, lambda conn, name, reads: reads.stats(conn, name, start))
    else:
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
