"""`watchkeeper --status` and `jobs`: from the running keeper when there is one, else
from the vault's files. No typer here: the quick commands run it (tui/cli/fast.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.tui.cli.common import (
    EXIT_NO_KEEPER,
    EXIT_OK,
    echo,
    in_cluster,
    keeper_link,
    local_time,
    note,
    open_config,
    print_json,
    table,
    through,
    try_ask,
)

if TYPE_CHECKING:
    from watchkeeper.core.config import Config


def status(config: Config, as_json: bool) -> int:
    """Print the status; EXIT_NO_KEEPER when no keeper holds the vault, so that
    `watchkeeper --status` serves as a health check."""
    connection, unreachable = keeper_link(config.vault)
    data = None
    if connection is not None:
        answer = try_ask(connection, "status")
        if answer is not None:
            from watchkeeper.core.status_live import live_status

            data = live_status(config, answer["status"])
    if data is None and config.cluster is not None:
        data = in_cluster(config, lambda conn, name, reads: reads.vault_status(conn, name, config))
    if data is None:
        from watchkeeper.core.status import vault_status  # the files: only with no keeper to ask

        data = vault_status(config)
    code = EXIT_OK if data["keeper"]["running"] else EXIT_NO_KEEPER
    if as_json:
        print_json(data)
        return code
    tz = config.keeper.tz
    keeper = data["keeper"]
    if keeper["running"]:
        from watchkeeper.core.units import format_duration

        uptime = format_duration(keeper["uptime_s"]) if keeper["uptime_s"] is not None else "?"
        line = f"keeper: up, pid {keeper['pid']} on {keeper['hostname']}, uptime {uptime}"
        if data["source"] == "keeper":
            line += f", {keeper['state']}, {keeper['runs_in_flight']} run(s) in flight"
            if keeper.get("role"):  # cluster mode
                line += f", {keeper['role']} epoch {keeper.get('epoch')}"
        else:
            line += f" (not asked: {unreachable or 'its control socket did not answer'})"
        echo(line)
    else:
        where = "the cluster's database" if data["source"] == "database" else "the vault's files"
        echo(f"keeper: not running (from {where})")
    echo(f"vault: {data['vault']}" + ("  [ALL PAUSED]" if data["paused"] else ""))
    echo(
        "folders: " + "  ".join(f"{name} {info['count']}" for name, info in data["folders"].items())
    )
    echo(f"today: {data['today']['ok']} ok, {data['today']['failed']} failed")
    for usage in data["quota"]:
        limit = usage["limit"] or "∞"
        frees = (
            f", next slot frees {local_time(usage['next_free'], tz, '%H:%M:%S')}"
            if usage["limit"] and usage["used"] >= usage["limit"]
            else ""
        )
        echo(f"quota {usage['scope']}: {usage['used']}/{limit} in the last hour{frees}")
    jobs_table(data["jobs"], tz)
    return code


def jobs_table(views: list[dict], tz: Any) -> None:
    from watchkeeper.core.history_format import status_label

    rows = []
    for job in views:
        last = job["last"]
        last_text = "—"
        if last:
            when = local_time(last["completedAt"] or last["startedAt"], tz, "%m-%d %H:%M:%S")
            last_text = f"{status_label(last['status'])} {when}"
        state = "paused" if job["paused"] else ("disabled" if not job["enabled"] else "")
        breaker = job.get("breaker")
        if breaker and breaker["state"] != "closed":
            until = breaker["open_until"]
            until = f" until {local_time(until, tz, '%H:%M:%S')}" if until else ""
            state = f"{state} circuit {breaker['state']}{until}".strip()
        rows.append(
            [job["name"], job["trigger"], local_time(job["next_run"], tz), last_text, state]
        )
    table(["JOB", "TRIGGER", "NEXT RUN", "LAST", "STATE"], rows)


def jobs(vault: Path | None, as_json: bool = False) -> None:
    """`watchkeeper jobs`; `vault`: the --vault flag."""
    config = open_config(vault, demo=True)
    connection, unreachable = keeper_link(config.vault)
    view, source = None, "no keeper running: from the config, state and history files"
    if connection is not None:
        answer = try_ask(connection, "jobs")
        if answer is not None:
            view, source = answer["jobs"], through(connection)
    if view is None and config.cluster is not None:
        view = in_cluster(config, lambda conn, name, reads: reads.jobs_view(conn, name, config))
        source = "no keeper answered: from the cluster's database"
    if view is None:
        from watchkeeper.core.status import jobs_view  # the files: only with no keeper to ask

        view = jobs_view(config)
        if unreachable:
            source = f"from the files ({unreachable})"
    if as_json:
        print_json(view)
    else:
        jobs_table(view, config.keeper.tz)
    # stderr: --json stays one clean document.
    note(source)
