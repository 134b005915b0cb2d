"""Logs/metrics.prom: Prometheus text exposition format 0.0.4, for node_exporter's
textfile collector (point --collector.textfile.directory at the vault's Logs/)."""

from __future__ import annotations

import functools
import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from watchkeeper.core.logsdir import write_file
from watchkeeper.core.stats import nearest_rank
from watchkeeper.core.vault import FolderSummary

METRICS_NAME = "metrics.prom"
PREFIX = "watchkeeper_"
RESERVOIR = 1000  # recent durations kept per job for the quantiles
QUANTILES = (0.5, 0.95)


def escape_label(value: str) -> str:
    """Label value escaping of the text format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


@functools.lru_cache(maxsize=1 << 16)
def _label_part(labels: tuple[tuple[str, str], ...]) -> str:
    """`{job_name="a",status="ok"}`; cached, as the same labels come back with every write
    (a keeper with a thousand jobs writes some 8,000 samples each time)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(text)}"' for key, text in labels) + "}"


@dataclass
class _Durations:
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RESERVOIR))
    total: float = 0.0
    count: int = 0
    # Quantiles as of `cached_at` observations: render re-sorts only jobs that ran since.
    cached_at: int = -1
    cached: tuple[float, ...] = ()

    def quantiles(self) -> tuple[float, ...]:
        if self.cached_at != self.count:
            ordered = sorted(self.recent)
            self.cached = tuple(nearest_rank(ordered, q * 100) for q in QUANTILES)
            self.cached_at = self.count
        return self.cached


def _header(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {PREFIX}{name} {_escape_help(help_text)}"
    yield f"# TYPE {PREFIX}{name} {kind}"


def _sample(name: str, value: float, suffix: str = "", **labels: str) -> str:
    return f"{PREFIX}{name}{suffix}{_label_part(tuple(labels.items()))} {format_value(value)}"


class Metrics:
    """Accumulates what runs did; the keeper feeds observe_run() as each run ends."""

    def __init__(self) -> None:
        self.created_at = time.time()
        self._runs: Counter[tuple[str, str]] = Counter()
        self._last_success: dict[str, float] = {}
        self._durations: dict[str, _Durations] = {}

    def observe_run(
        self, job: str, status: str, duration_ms: int | None, completed_at: float
    ) -> None:
        """One final run. Skipped runs never ran, so they count but add no duration."""
        self._runs[job, status] += 1
        if status == "success":
            self._last_success[job] = completed_at
        if duration_ms is None or status == "skipped":
            return
        durations = self._durations.get(job)
        if durations is None:
            durations = self._durations[job] = _Durations()
        seconds = duration_ms / 1000
        durations.recent.append(seconds)
        durations.total += seconds
        durations.count += 1

    def lines(self, snapshot: Mapping[str, Any], folders: list[FolderSummary]) -> Iterator[str]:
        """The file's lines one at a time, so a caller on an event loop can give way
        between them (a thousand jobs make some 8,000). Runs observed meanwhile may or may
        not be counted, but each family stays consistent: it starts from a copy."""
        yield from self._runs_family()
        yield from self._last_success_family()
        yield from self._duration_family()
        yield from _quota_families(snapshot.get("quota") or [])
        yield from _vault_family(folders)
        yield from _breaker_family(snapshot.get("jobs") or [])
        yield from _gauge("running_runs", "Runs in flight now.", snapshot.get("running", 0))
        yield from _gauge("up", "1 while the keeper that writes this file runs.", 1)
        yield from _gauge(
            "keeper_start_time_seconds",
            "When the keeper started, in seconds since the Unix epoch.",
            self._started_at(snapshot),
        )

    def _runs_family(self) -> Iterator[str]:
        yield from _header("runs_total", "counter", "Runs that ended, by job and final status.")
        for (job, status), count in sorted(self._runs.items()):
            yield _sample("runs_total", count, job_name=job, status=status)

    def _last_success_family(self) -> Iterator[str]:
        name = "last_success_timestamp_seconds"
        help_text = "When each job last succeeded, in seconds since the Unix epoch."
        yield from _header(name, "gauge", help_text)
        for job, moment in sorted(self._last_success.items()):
            yield _sample(name, moment, job_name=job)

    def _duration_family(self) -> Iterator[str]:
        name = "run_duration_seconds"
        yield from _header(
            name,
            "summary",
            f"Run duration; quantiles over each job's last {RESERVOIR} runs, "
            "sum and count over all since the keeper started.",
        )
        for job, durations in sorted(self._durations.items()):
            total, count = durations.total, durations.count
            for q, value in zip(QUANTILES, durations.quantiles(), strict=True):
                yield _sample(name, value, job_name=job, quantile=str(q))
            yield _sample(name, total, "_sum", job_name=job)
            yield _sample(name, count, "_count", job_name=job)

    def _started_at(self, snapshot: Mapping[str, Any]) -> float:
        started = snapshot.get("started_at")
        if isinstance(started, str):
            try:
                return datetime.fromisoformat(started).timestamp()
            except ValueError:
                pass
        return self.created_at


def _gauge(name: str, help_text: str, value: float) -> Iterator[str]:
    yield from _header(name, "gauge", help_text)
    yield _sample(name, value)


def _quota_families(quota: Iterable[dict[str, Any]]) -> Iterator[str]:
    # One sample per scope even if a scope were listed twice: duplicates void the file.
    by_scope = sorted({str(scope.get("scope")): scope for scope in quota}.items())
    yield from _header("quota_used", "gauge", "Runs counted against each quota's sliding window.")
    for name, scope in by_scope:
        yield _sample("quota_used", scope.get("used") or 0, scope=name)
    help_text = "Each quota's limit per window; +Inf when it has none."
    yield from _header("quota_limit", "gauge", help_text)
    for name, scope in by_scope:
        # +Inf rather than 0 for "unlimited": a used/limit alert must not fire on it.
        yield _sample("quota_limit", scope.get("limit") or math.inf, scope=name)


def _vault_family(folders: Iterable[FolderSummary]) -> Iterator[str]:
    yield from _header("vault_files", "gauge", "Files in each vault folder.")
    for folder in folders:
        yield _sample("vault_files", folder.count, folder=folder.name)


def _breaker_family(jobs: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Only in a vault with a breaker: a family with no samples says nothing."""
    guarded = sorted((str(job["name"]), job["breaker"]) for job in jobs if job.get("breaker"))
    if guarded:
        help_text = "1 while an http job's circuit breaker refuses runs (open or half-open)."
        yield from _header("breaker_open", "gauge", help_text)
    for name, breaker in guarded:
        yield _sample("breaker_open", breaker["state"] != "closed", job_name=name)


def write_metrics(vault: Path, text: str) -> None:
    write_file(vault / "Logs" / METRICS_NAME, text)
