"""<vault>/Dashboard.md: what the keeper is doing, as Markdown for the operator's notes app.

Everything that comes from data (file names, job names, errors) goes through `_text`:
the vault holds files anyone may name, and a `|` or newline in a name must not break a
table, nor a `#` or `[[` turn into a tag or link.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from watchkeeper.core.atomic import write_atomic
from watchkeeper.core.history import GLYPHS, RunRecord
from watchkeeper.core.names import shown
from watchkeeper.core.units import format_duration
from watchkeeper.core.vault import FolderSummary

DASHBOARD_NAME = "Dashboard.md"
RECENT_ROWS = 10
FAILURE_ROWS = 50
FAILURE_WINDOW = timedelta(hours=24)
ERROR_CHARS = 200

_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# Other control characters would reach a terminal that `cat`s the file as escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MARKUP = re.compile(r"([\\`*_\[\]<>#|$~&])")


@functools.lru_cache(maxsize=64)
def status_label(status: str) -> str:
    """Glyph and word, e.g. "✘ failure"."""
    return f"{GLYPHS.get(status, '?')} {_text(status)}"


def _text(value: object, limit: int | None = None) -> str:
    """Data made safe for one Markdown table cell: one line, no markup, `|` escaped."""
    text = value if type(value) is str else str(value)
    return _cell(text) if limit is None else _escaped(text, limit)


def _escaped(text: str, limit: int | None) -> str:
    text = _CONTROL.sub("\ufffd", _LINE_BREAK.sub(" ↵ ", shown(text)).replace("\t", " "))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MARKUP.sub(r"\\\1", text)


@functools.lru_cache(maxsize=1 << 14)
def _cell(text: str) -> str:
    """Cached: the same names, triggers and counts come back with every write (a thousand
    jobs make some 4,000 cells), and a cached cell costs a tenth of escaping it again."""
    return _escaped(text, None)


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _local(moment: datetime, tz: tzinfo, today: date) -> str:
    """Local clock time; the date only when it is not `today`."""
    local = moment.astimezone(tz)
    if local.date() == today:
        # strftime("%H:%M:%S") to the byte, at a third of its cost.
        return f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    return local.strftime("%Y-%m-%d %H:%M")


@functools.lru_cache(maxsize=1 << 14)
def _local_of(value: str, tz: tzinfo, today: date) -> str | None:
    """_local() of an ISO string, None if it is not one. Cached: each job's last run
    comes back with every write until the job runs again."""
    moment = _moment(value)
    return None if moment is None else _local(moment, tz, today)


class _Clock:
    """Moments as one write shows them: local to `tz`, the date only when it is not
    `now`'s day. Countdowns are kept for the write, as a thousand jobs due every second
    share a handful of next-run seconds."""

    def __init__(self, tz: tzinfo, now: datetime) -> None:
        self.tz = tz
        self.now = now
        self.today = now.astimezone(tz).date()
        self._upcoming: dict[tuple[str, str], str] = {}

    def when(self, moment: datetime | None) -> str:
        return "—" if moment is None else _local(moment, self.tz, self.today)

    def when_of(self, value: object) -> str | None:
        """when() of a datetime or an ISO string; None for anything else."""
        if isinstance(value, str):
            return _local_of(value, self.tz, self.today)
        return _local(value, self.tz, self.today) if isinstance(value, datetime) else None

    def upcoming(self, value: object, past: str) -> str:
        """ "14:05:00 (in 4m05s)"; `past` instead of the countdown once the moment has come."""
        if not isinstance(value, str):
            return self._countdown(_moment(value), past)
        key = (value, past)
        text = self._upcoming.get(key)
        if text is None:
            text = self._upcoming[key] = self._countdown(_moment(value), past)
        return text

    def _countdown(self, moment: datetime | None, past: str) -> str:
        if moment is None:
            return "—"
        left = (moment - self.now).total_seconds()
        return f"{self.when(moment)} ({'in ' + format_duration(left) if left > 0 else past})"


def _duration_ms(ms: object) -> str:
    return format_duration(ms / 1000) if isinstance(ms, int | float) else "—"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """Cells must already be escaped: some carry markup of ours."""
    yield "| " + " | ".join(header) + " |"
    yield "|" + "|".join("---" for _ in header) + "|"
    for row in rows:
        yield "| " + " | ".join([cell or "—" for cell in row]) + " |"


def _keeper_lines(snapshot: Mapping[str, Any]) -> list[str]:
    today = snapshot.get("today") or {}
    facts = [f"**{_text(snapshot.get('state', 'UNKNOWN'))}**"]
    if snapshot.get("pid") is not None:
        host = f" on {_text(snapshot['host'])}" if snapshot.get("host") else ""
        facts.append(f"pid {_text(snapshot['pid'])}{host}")
    if isinstance(snapshot.get("uptime_s"), int | float):
        facts.append(f"up {format_duration(snapshot['uptime_s'])}")
    counts = [
        f"{GLYPHS['success']} {today.get('ok', 0)} ok",
        f"{GLYPHS['failure']} {today.get('failed', 0)} failed",
    ]
    if snapshot.get("running"):
        counts.append(f"{GLYPHS['running']} {snapshot['running']} running")
    if snapshot.get("waiting"):
        counts.append(f"{snapshot['waiting']} waiting for a slot")
    return [" · ".join(facts), "", "Today: " + " · ".join(counts)]


def _folder_lines(folders: Sequence[FolderSummary]) -> Iterator[str]:
    rows = [
        (_text(folder.name), str(folder.count), " · ".join(_text(name) for name in folder.newest))
        for folder in folders
    ]
    return _table(("Folder", "Files", "Newest"), rows)


def _last_result(job: dict[str, Any], clock: _Clock) -> str:
    last = job.get("last")
    done = "—"
    if last:
        when = clock.when_of(last.get("completedAt")) or clock.when_of(last.get("startedAt"))
        done = f"{status_label(str(last.get('status')))} {when or '—'}"
    running = job.get("running") or []
    if not running:
        return done
    elapsed = max(run.get("elapsed_s") or 0 for run in running)
    many = f" ×{len(running)}" if len(running) > 1 else ""
    now_word = f"{status_label('running')}{many} {format_duration(elapsed)}"
    return now_word if not last else f"{now_word}; last {done}"


def _job_row(job: dict[str, Any], clock: _Clock) -> tuple[str, ...]:
    return (
        _text(job.get("name")),
        _text(job.get("trigger") or "manual"),
        clock.upcoming(job.get("next_run"), "due"),
        _last_result(job, clock),
        "yes" if job.get("paused") else ("disabled" if job.get("enabled") is False else "no"),
    )


def _job_lines(jobs: Sequence[dict[str, Any]], clock: _Clock) -> Iterable[str]:
    if not jobs:
        return ["No jobs configured."]
    rows = (_job_row(job, clock) for job in jobs)
    return _table(("Job", "Trigger", "Next run", "Last result", "Paused"), rows)


def _run_rows(records: Sequence[RunRecord], clock: _Clock) -> Iterator[str]:
    def duration(record: RunRecord) -> str:
        if record.status == "running":
            return format_duration(max(0.0, (clock.now - record.started_at).total_seconds()))
        return _duration_ms(record.duration_ms)

    rows = [
        (
            clock.when(record.started_at),
            _text(record.job),
            status_label(record.status),
            duration(record),
            _text(record.error, ERROR_CHARS) if record.error else "",
        )
        for record in records
    ]
    return _table(("Started", "Job", "Status", "Duration", "Error"), rows)


def _quota_row(scope: dict[str, Any], clock: _Clock) -> tuple[str, ...]:
    limit = scope.get("limit") or 0
    return (
        _text(scope.get("scope")),
        _text(scope.get("used", 0)),
        _text(limit) if limit else "unlimited",
        clock.upcoming(scope.get("next_free"), "free now") if limit else "—",
    )


def _quota_lines(quota: Sequence[dict[str, Any]], clock: _Clock) -> Iterator[str]:
    rows = (_quota_row(scope, clock) for scope in quota)
    return _table(("Scope", "Used", "Limit", "Next slot frees"), rows)


def dashboard_lines(
    snapshot: Mapping[str, Any],
    folders: list[FolderSummary],
    recent: list[RunRecord],
    failures: list[RunRecord],
    tz: tzinfo,
    now: datetime,
) -> Iterator[str]:
    """Dashboard.md a line at a time, so a caller on an event loop can give way between
    them (a thousand jobs make a thousand rows, and as many quota rows). `snapshot` is
    Keeper.snapshot() (plus "quota" when the keeper has one); `recent` and `failures`
    may come in any order and are sorted newest first; failures that started more than
    24 h before `now` are left out."""
    vault = Path(str(snapshot.get("vault", ""))).name or "vault"
    local_now = now.astimezone(tz)
    clock = _Clock(tz, now)
    yield from (
        f"# watchkeeper — {_text(vault)}",
        "",
        f"updated {local_now.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        "## Keeper",
        "",
        *_keeper_lines(snapshot),
        "",
        "## Vault",
        "",
        *_folder_lines(folders),
        "",
        "## Jobs",
        "",
    )
    yield from _job_lines(snapshot.get("jobs") or [], clock)
    yield from ("", f"## Last {RECENT_ROWS} runs", "")
    newest = sorted(recent, key=lambda record: record.started_at, reverse=True)[:RECENT_ROWS]
    yield from _run_rows(newest, clock) if newest else ["No runs yet."]
    yield from ("", "## Failures, last 24 h", "")
    cutoff = now - FAILURE_WINDOW
    failed = sorted(
        (record for record in failures if record.started_at >= cutoff),
        key=lambda record: record.started_at,
        reverse=True,
    )
    if failed:
        yield from _run_rows(failed[:FAILURE_ROWS], clock)
        if len(failed) > FAILURE_ROWS:
            yield from ("", f"… and {len(failed) - FAILURE_ROWS} more.")
    else:
        yield "No failures in the last 24 h."
    if snapshot.get("quota"):
        yield from ("", "## Quota", "")
        yield from _quota_lines(snapshot["quota"], clock)


def write_dashboard(vault: Path, text: str) -> None:
    write_atomic(vault / DASHBOARD_NAME, text)
