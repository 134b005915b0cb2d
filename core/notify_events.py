"""Which notification events a final run record is, and the words each message carries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypedDict

from watchkeeper.core.history import RunRecord, iso
from watchkeeper.core.units import format_duration

FAILED = ("failure", "timeout")
# The reasons core/quota.py and core/admission.py give a run they skip: a quota refusal,
# and a slot skipped because the job's previous run was still running or queued.
QUOTA_REASON = "quota:"
OVERLAP_REASON = "(overlap = "
SLOT_TRIGGERS = ("schedule", "catch_up")
# A digest quotes this many of its events; the rest are counted.
DIGEST_LINES = 10


class NotifyEvent(TypedDict):
    event: str
    job: str
    time: str
    run: str | None
    status: str | None
    error: str | None
    attempt: int | None
    exitCode: int | None


class Message(TypedDict):
    """What a channel is sent: the webhook's JSON body (Slack reads `text`), the command's
    stdin. One event, or a digest of what came while the channel was rate-limited."""

    text: str
    event: str  # the event's name, or "digest"
    count: int
    vault: str
    host: str
    events: list[NotifyEvent]


def run_events(record: RunRecord, retries: int, failing_before: bool) -> list[str]:
    """The events a final record is. `retries`: the job's; `failing_before`: whether its
    last run that ran had failed (a success is then `recovered`)."""
    status, error = record.status, record.error or ""
    if status in FAILED:
        exhausted = retries > 0 and record.attempt > retries
        return ["failure", "retries_exhausted"] if exhausted else ["failure"]
    if status == "success":
        return ["recovered"] if failing_before else []
    if status == "interrupted":
        return ["lost"]
    if status == "skipped":
        if error.startswith(QUOTA_REASON):
            return ["quota_refused"]
        if OVERLAP_REASON in error and record.trigger in SLOT_TRIGGERS:
            return ["missed"]
    return []


def record_event(event: str, record: RunRecord) -> NotifyEvent:
    return NotifyEvent(
        event=event,
        job=record.job,
        time=iso(record.completed_at or record.started_at) or "",
        run=record.id,
        status=record.status,
        error=record.error,
        attempt=record.attempt,
        exitCode=record.exit_code,
    )


def job_event(event: str, job: str, time: str, reason: str) -> NotifyEvent:
    """An event with no run behind it: a slot missed while paused or while no keeper ran."""
    return NotifyEvent(
        event=event, job=job, time=time, run=None, status=None, error=reason, attempt=None,
        exitCode=None,
    )


def line(event: NotifyEvent) -> str:
    words = event["event"] + (f": job {event['job']}" if event["job"] else "")
    if event["run"]:
        words += f" run {event['run']}"
    if event["attempt"] and event["attempt"] > 1:
        words += f" (attempt {event['attempt']})"
    if event["exitCode"] is not None:
        words += f", exit {event['exitCode']}"
    if event["error"]:
        words += f": {event['error']}"
    return words


def message(
    events: Sequence[NotifyEvent], vault: str, host: str, window: float, extra: int = 0
) -> Message:
    """One event as itself, several as a digest: counts per event and job, then the first.
    `extra`: events past what an outbox keeps, counted only."""
    head = f"watchkeeper [{vault}]"
    if len(events) == 1 and not extra:
        only = events[0]
        return Message(
            text=f"{head} {line(only)}", event=only["event"], count=1, vault=vault, host=host,
            events=list(events),
        )
    tally = Counter((event["event"], event["job"]) for event in events)
    counts = ", ".join(f"{kind} x{n} ({job})" for (kind, job), n in tally.most_common())
    quoted = [f"- {line(event)}" for event in events[:DIGEST_LINES]]
    total = len(events) + extra
    if total > DIGEST_LINES:
        quoted.append(f"- ... {total - DIGEST_LINES} more")
    text = "\n".join([f"{head} {total} events within {format_duration(window)}: {counts}", *quoted])
    return Message(
        text=text, event="digest", count=total, vault=vault, host=host,
        events=list(events),
    )
