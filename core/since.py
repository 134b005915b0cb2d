"""`--since` as operators write it: a duration back from now ("24h", "7d") or a date or
time ("2026-12-01", "2026-12-01T08:00"), read in the vault's time zone unless it names
its own offset."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from watchkeeper.core.units import parse_duration

EXAMPLES = "a duration like 24h or 7d, or a date/time like 2026-12-01 or 2026-12-01T08:00"


def parse_since(text: str, tz: tzinfo, now: datetime | None = None) -> datetime:
    """The moment `text` names; ValueError saying what is accepted otherwise."""
    now = now if now is not None else datetime.now(tz)
    value = text.strip()
    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected {EXAMPLES}, got {text!r}") from None
    # A wall time that a DST change skips or repeats is taken as its first reading (fold 0),
    # as cron slots are.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
