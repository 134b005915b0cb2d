"""What `--status` and `jobs` report when they read the vault's files directly (what a
running keeper says is in core/status_live.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from watchkeeper.core import history as hist
from watchkeeper.core import lock
from watchkeeper.core.config import Config, JobConfig
from watchkeeper.core.history import RunRecord
from watchkeeper.core.history_scan import parse_line
from watchkeeper.core.history_summary import HistorySummary, quarter_of
from watchkeeper.core.state import load_state
from watchkeeper.core.status_live import folders_view
from watchkeeper.core.triggers import schedules_for, wall_moment

# Jobs with no run in the last day are looked up further back, up to this many and this
# far (as when each cost a scan of the history: the answers stay as they were).
MAX_SINGLE_LOOKUPS = 20
SINGLE_LOOKBACK = timedelta(days=7)


def keeper_info(vault: Path) -> dict[str, Any]:
    holder = lock.holder(vault)
    if holder is None:
        return {
            "running": False,
            "pid": None,
            "hostname": None,
            "started_at": None,
            "uptime_s": None,
        }
    started = holder.get("started_at")
    uptime = None
    if isinstance(started, str):
        with contextlib.suppress(ValueError):
            uptime = round(time.time() - datetime.fromisoformat(started).timestamp(), 1)
    return {
        "running": True,
        "pid": holder.get("pid"),
        "hostname": holder.get("hostname"),
        "started_at": started,
        "uptime_s": uptime,
    }


def next_run_offline(job: JobConfig, config: Config) -> datetime | None:
    """Cron slots can be computed from the config alone; interval slots depend on when
    the keeper started, which only the keeper knows."""
    tz = config.keeper.tz
    wall = [s for s in schedules_for(job, tz) if s.clock == "wall"] if job.enabled else []
    if not wall:
        return None
    return wall_moment(min(s.first(time.time()) for s in wall), tz)


def last_runs(config: Config) -> tuple[dict[str, RunRecord], dict[str, int], int]:
    """Last final record per job, today's ok/failed counts, unreadable history lines."""
    return last_runs_in(config.vault / "Logs" / "history", config.jobs, config.keeper.tz)


def last_runs_in(
    directory: Path, jobs: Iterable[str], tz: ZoneInfo
) -> tuple[dict[str, RunRecord], dict[str, int], int]:
    """last_runs() of the history in `directory` (the JSONL store's answer too).

    From the history's summary (history_summary), which reads only what was written since
    it was last asked: a day of 35,000 runs is not read again for every `--status`."""
    now = datetime.now(tz)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    window = min(midnight, now - timedelta(days=1))
    lookback = now - SINGLE_LOOKBACK
    # A run is written when it starts or later: the segments of its start's day on hold it.
    summary = HistorySummary(directory, keep_from=lookback.astimezone(UTC).date())
    summary.update(window.astimezone(UTC).date())
    ended = summary.ended_since(quarter_of(hist.iso(midnight)))
    today = {
        "ok": ended["success"],
        "failed": ended["failure"] + ended["timeout"] + ended["interrupted"],
    }
    last: dict[str, RunRecord] = {}
    missing: list[str] = []
    for name in jobs:
        line = summary.newest(name, hist.iso(window))
        if line is None and len(missing) < MAX_SINGLE_LOOKUPS:
            if not missing:
                summary.update(summary.keep_from)  # only now: the week behind the day
            missing.append(name)
            line = summary.newest(name, hist.iso(lookback))
        record = parse_line(line) if line is not None else None
        if record is not None:
            last[name] = record
    summary.save()
    return last, today, summary.bad_lines(window.astimezone(UTC).date())


def jobs_view(config: Config, last: dict[str, RunRecord] | None = None) -> list[dict[str, Any]]:
    state = load_state(config.vault)
    if last is None:
        last = last_runs(config)[0]
    return [
        _job_view(job, config, state.is_paused(job.name), last.get(job.name))
        for job in config.jobs.values()
    ]


def _job_view(
    job: JobConfig, config: Config, paused: bool, last: RunRecord | None
) -> dict[str, Any]:
    # A paused job's slots pass without a run: it has no next run until resumed.
    next_run = None if paused else next_run_offline(job, config)
    return {
        "name": job.name,
        "trigger": job.trigger_summary,
        "enabled": job.enabled,
        "paused": paused,
        "next_run": next_run.isoformat(timespec="seconds") if next_run else None,
        "last": last.to_json() if last else None,
        "running": [],
        "queued": 0,
    }


def vault_status(config: Config) -> dict[str, Any]:
    state = load_state(config.vault)
    last, today, bad = last_runs(config)
    return {
        "vault": str(config.vault),
        "keeper": keeper_info(config.vault),
        "source": "files",
        "paused": state.paused,
        "folders": folders_view(config.vault),
        "today": today,
        "jobs": jobs_view(config, last),
        "quota": quota_view(config),
        "history_bad_lines": bad,
    }


def quota_view(config: Config) -> list[dict[str, Any]]:
    """Used/limit per scope over the sliding hour, rebuilt from history like the keeper's."""
    from watchkeeper.core.quota import Quota, usage_view

    limits = {name: job.max_per_hour for name, job in config.jobs.items() if job.max_per_hour}
    now = time.time()
    quota = Quota.from_history(
        config.vault / "Logs" / "history", config.keeper.max_runs_per_hour, limits, now
    )
    return usage_view(quota.usage(now))
