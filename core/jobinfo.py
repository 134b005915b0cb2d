"""A job's settings in words, row by row: what `watchkeeper describe` and the console's
job screen list."""

from __future__ import annotations

from watchkeeper.core.config import JobConfig
from watchkeeper.core.config_http import summary
from watchkeeper.core.limits import limits_text
from watchkeeper.core.units import format_duration
from watchkeeper.core.worktree import isolation_rows


def config_rows(job: JobConfig, config_name: str) -> list[tuple[str, str]]:
    command = job.command if isinstance(job.command, str) else " ".join(job.command)
    rows: list[tuple[str, str]] = [
        ("http", summary(job.http)) if job.http else ("command", command),
        ("trigger", job.trigger_summary),
        ("enabled", "yes" if job.enabled else "no (runs only when named)"),
        ("timeout", format_duration(job.timeout) if job.timeout else "none"),
        ("retries", f"{job.retries} (delay {format_duration(job.retry_delay)})"),
        ("overlap", job.overlap),
        ("max per hour", str(job.max_per_hour or "no limit")),
    ]
    if job.timezone:
        rows.append(("timezone", job.timezone))
    if job.jitter:
        rows.append(("jitter", f"up to {format_duration(job.jitter)} after each slot"))
    if job.isolate:
        rows.extend(isolation_rows(job))
    if limited := limits_text(job):
        rows.append(("limits", limited))
    if job.on_files:
        rows.append(("settle", format_duration(job.settle)))
        rows.append(("quarantine after", f"{job.quarantine_after} failed runs"))
    if job.cwd:
        rows.append(("cwd", job.cwd))
    if job.env:
        rows.append(("env", ", ".join(sorted(job.env))))
    if job.on_success:
        rows.append(("on_success", str(job.on_success)))
    if job.on_failure:
        rows.append(("on_failure", str(job.on_failure)))
    if job.breaker:
        cooldown = format_duration(job.breaker.cooldown)
        rows.append(("breaker", f"opens after {job.breaker.failures} failures, {cooldown}"))
    if job.description:
        rows.append(("description", job.description))
    rows.append(("config line", f"{config_name}:{job.line}"))
    return rows
