"""Logs/metrics.prom: Prometheus text exposition format 0.0.4, for node_exporter's
textfile collector (point --collector.textfile.directory at the vault's Logs/)."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.atomic import write_atomic
from core.vault import FolderSummary

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
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def nearest_rank(ordered: list[float], q: float) -> float:
    """The q-quantile by nearest rank, as `watchkeeper stats` computes p50/p95."""
    rank = math.ceil(q * len(ordered))
    return ordered[max(rank, 1) - 1]


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
            self.cached = tuple(nearest_rank(ordered, q) for q in QUANTILES)
            self.cached_at = self.count
        return self.cached


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = PREFIX + name
        self.lines = [
            f"# HELP {self.name} {_escape_help(help_text)}",
            f"# TYPE {self.name} {kind}",
        ]

    def sample(self, value: float, suffix: str = "", **labels: str) -> None:
        rendered = ",".join(f'{key}="{escape_label(str(text))}"' for key, text in labels.items())
        label_part = "{" + rendered + "}" if rendered else ""
        self.lines.append(f"{self.name}{suffix}{label_part} {format_value(value)}")


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

    def render(self, snapshot: dict[str, Any], folders: list[FolderSummary]) -> str:
        families = [
            self._runs_family(),
            self._last_success_family(),
            self._duration_family(),
            *_quota_families(snapshot.get("quota") or []),
            _vault_family(folders),
            _gauge("running_runs", "Runs in flight now.", snapshot.get("running", 0)),
            _gauge("up", "1 while the keeper that writes this file runs.", 1),
            _gauge(
                "keeper_start_time_seconds",
                "When the keeper started, in seconds since the Unix epoch.",
                self._started_at(snapshot),
            ),
        ]
        return "\n".join(line for family in families for line in family.lines) + "\n"

    def _runs_family(self) -> _Family:
        family = _Family("runs_total", "counter", "Runs that ended, by job and final status.")
        for (job, status), count in sorted(self._runs.items()):
            family.sample(count, job=job, status=status)
        return family

    def _last_success_family(self) -> _Family:
        family = _Family(
            "last_success_timestamp_seconds",
            "gauge",
            "When each job last succeeded, in seconds since the Unix epoch.",
        )
        for job, moment in sorted(self._last_success.items()):
            family.sample(moment, job=job)
        return family

    def _duration_family(self) -> _Family:
        family = _Family(
            "run_duration_seconds",
            "summary",
            f"Run duration; quantiles over each job's last {RESERVOIR} runs, "
            "sum and count over all since the keeper started.",
        )
        for job, durations in sorted(self._durations.items()):
            for q, value in zip(QUANTILES, durations.quantiles(), strict=True):
                family.sample(value, job=job, quantile=str(q))
            family.sample(durations.total, "_sum", job=job)
            family.sample(durations.count, "_count", job=job)
        return family

    def _started_at(self, snapshot: dict[str, Any]) -> float:
        started = snapshot.get("started_at")
        if isinstance(started, str):
            try:
                return datetime.fromisoformat(started).timestamp()
            except ValueError:
                pass
        return self.created_at


def _gauge(name: str, help_text: str, value: float) -> _Family:
    family = _Family(name, "gauge", help_text)
    family.sample(value)
    return family


def _quota_families(quota: Iterable[dict[str, Any]]) -> list[_Family]:
    used = _Family("quota_used", "gauge", "Runs counted against each quota's sliding window.")
    limit = _Family("quota_limit", "gauge", "Each quota's limit per window; +Inf when it has none.")
    # One sample per scope even if a scope were listed twice: duplicates void the file.
    by_scope = {str(scope.get("scope")): scope for scope in quota}
    for name, scope in sorted(by_scope.items()):
        used.sample(scope.get("used") or 0, scope=name)
        # +Inf rather than 0 for "unlimited": a used/limit alert must not fire on it.
        limit.sample(scope.get("limit") or math.inf, scope=name)
    return [used, limit]


def _vault_family(folders: Iterable[FolderSummary]) -> _Family:
    family = _Family("vault_files", "gauge", "Files in each vault folder.")
    for folder in folders:
        family.sample(folder.count, folder=folder.name)
    return family


def write_metrics(vault: Path, text: str) -> None:
    write_atomic(vault / "Logs" / METRICS_NAME, text)
