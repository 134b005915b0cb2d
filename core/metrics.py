"""Logs/metrics.prom: Prometheus text exposition format 0.0.4, for node_exporter's
textfile collector (point --collector.textfile.directory at the vault's Logs/)."""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

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
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
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
def _head(name: str, *labels: str) -> str:
    """A sample's line up to its value: `watchkeeper_runs_total{job_name="a",status="ok"} `
    for ("runs_total", "job_name", "a", "status", "ok"). Cached, as the same series come
    back with every write (a keeper with a thousand jobs writes some 8,000 samples)."""
    keys, texts = labels[0::2], labels[1::2]
    pairs = ",".join(f'{key}="{escape_label(text)}"' for key, text in zip(keys, texts, strict=True))
    return f"{PREFIX}{name}{{{pairs}}} " if pairs else f"{PREFIX}{name} "


@dataclass
class _Durations:
    job: str
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RESERVOIR))
    # `recent` kept sorted as it changes: a write reads the quantiles of every job that ran,
    # and sorting each job's reservoir at each write cost more than the run itself.
    ordered: list[float] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    # The job's lines as of `text_at` observations: a write renders only jobs that ran since.
    text_at: int = -1
    text: str = ""
    heads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        name, job = "run_duration_seconds", self.job
        quantiles = [_head(name, "job_name", job, "quantile", str(q)) for q in QUANTILES]
        sums = _head(f"{name}_sum", "job_name", job), _head(f"{name}_count", "job_name", job)
        self.heads = (*quantiles, *sums)

    def add(self, seconds: float) -> None:
        if len(self.recent) == RESERVOIR:
            del self.ordered[bisect.bisect_left(self.ordered, self.recent[0])]
        self.recent.append(seconds)
        bisect.insort(self.ordered, seconds)
        self.total += seconds
        self.count += 1

    def lines(self) -> str:
        """Its quantile, _sum and _count samples, as one piece."""
        if self.text_at != self.count:
            *quantiles, sum_head, count_head = self.heads
            lines = [
                head + format_value(nearest_rank(self.ordered, q * 100))
                for head, q in zip(quantiles, QUANTILES, strict=True)
            ]
            lines.append(sum_head + format_value(self.total))
            lines.append(count_head + str(self.count))
            self.text = "\n".join(lines)
            self.text_at = self.count
        return self.text


K = TypeVar("K", str, tuple[str, str])


class _Sorted(Generic[K]):
    """A dict's keys in order, sorted again only when it grew (a Metrics dict never loses
    a key): a thousand jobs' keys are not sorted at every write."""

    def __init__(self) -> None:
        self.keys: list[K] = []

    def of(self, keys: Collection[K]) -> list[K]:
        if len(keys) != len(self.keys):
            self.keys = sorted(keys)
        return self.keys


def _header(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {PREFIX}{name} {_escape_help(help_text)}"
    yield f"# TYPE {PREFIX}{name} {kind}"


def _sample(name: str, value: float, *labels: str) -> str:
    return _head(name, *labels) + format_value(value)


class Metrics:
    """Accumulates what runs did; the keeper feeds observe_run() as each run ends."""

    def __init__(self) -> None:
        self.created_at = time.time()
        self._runs: Counter[tuple[str, str]] = Counter()
        self._last_success: dict[str, float] = {}
        self._durations: dict[str, _Durations] = {}
        self._runs_order: _Sorted[tuple[str, str]] = _Sorted()
        self._success_order: _Sorted[str] = _Sorted()
        self._durations_order: _Sorted[str] = _Sorted()

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
            durations = self._durations[job] = _Durations(job)
        durations.add(duration_ms / 1000)

    def lines(self, snapshot: Mapping[str, Any], folders: list[FolderSummary]) -> Iterator[str]:
        """The file's lines a few at a time, so a caller on an event loop can give way
        between them (a thousand jobs make some 8,000). Runs observed meanwhile may or may
        not be counted, but each sample is whole, and each job's summary is read at once."""
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
        runs = self._runs
        for job, status in self._runs_order.of(runs):
            yield _sample("runs_total", runs[job, status], "job_name", job, "status", status)

    def _last_success_family(self) -> Iterator[str]:
        name = "last_success_timestamp_seconds"
        help_text = "When each job last succeeded, in seconds since the Unix epoch."
        yield from _header(name, "gauge", help_text)
        last = self._last_success
        for job in self._success_order.of(last):
            yield _sample(name, last[job], "job_name", job)

    def _duration_family(self) -> Iterator[str]:
        name = "run_duration_seconds"
        yield from _header(
            name,
            "summary",
            f"Run duration; quantiles over each job's last {RESERVOIR} runs, "
            "sum and count over all since the keeper started.",
        )
        durations = self._durations
        for job in self._durations_order.of(durations):
            yield durations[job].lines()

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
        yield _sample("quota_used", scope.get("used") or 0, "scope", name)
    help_text = "Each quota's limit per window; +Inf when it has none."
    yield from _header("quota_limit", "gauge", help_text)
    for name, scope in by_scope:
        # +Inf rather than 0 for "unlimited": a used/limit alert must not fire on it.
        yield _sample("quota_limit", scope.get("limit") or math.inf, "scope", name)


def _vault_family(folders: Iterable[FolderSummary]) -> Iterator[str]:
    yield from _header("vault_files", "gauge", "Files in each vault folder.")
    for folder in folders:
        yield _sample("vault_files", folder.count, "folder", folder.name)


def _breaker_family(jobs: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Only in a vault with a breaker: a family with no samples says nothing."""
    guarded = sorted((str(job["name"]), job["breaker"]) for job in jobs if job.get("breaker"))
    if guarded:
        help_text = "1 while an http job's circuit breaker refuses runs (open or half-open)."
        yield from _header("breaker_open", "gauge", help_text)
    for name, breaker in guarded:
        yield _sample("breaker_open", breaker["state"] != "closed", "job_name", name)


def write_metrics(vault: Path, text: str) -> None:
    write_file(vault / "Logs" / METRICS_NAME, text)
