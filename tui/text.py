"""How the console words things: states, times, durations; and its clock.

Statuses are shown as glyph + word (core.history.status_label), so they read the same at
16 colours, under NO_COLOR and to a colour-blind operator; colour is only a second cue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from watchkeeper.core.units import format_duration

LEVELS = ("INFO", "WARN", "ERROR")
STATE_GLYPHS = {"RUNNING": "●", "PAUSED": "⏸", "STOPPING": "◌", "STOPPED": "■"}
FROZEN_ENV = "WATCHKEEPER_CONSOLE_NOW"
"""An ISO time that freezes every clock-dependent text (uptime, elapsed, "in 3m"), so
snapshots of the console come out the same on every run."""


def status_class(status: str) -> str:
    """The CSS-ish style name of a status; colour is only ever a second cue."""
    if status == "success":
        return "success"
    if status in ("failure", "timeout", "interrupted"):
        return "error"
    if status == "running":
        return "accent"
    return "warning"


@dataclass(frozen=True)
class Clock:
    """The console's idea of now: the real time, or one frozen moment for snapshots."""

    tz: tzinfo
    frozen: datetime | None = None

    def now(self) -> datetime:
        return self.frozen.astimezone(self.tz) if self.frozen else datetime.now(self.tz)

    @classmethod
    def from_env(cls, tz: tzinfo, frozen: datetime | None = None) -> Clock:
        if frozen is None and os.environ.get(FROZEN_ENV):
            frozen = datetime.fromisoformat(os.environ[FROZEN_ENV])
        if frozen is not None and frozen.tzinfo is None:
            frozen = frozen.replace(tzinfo=tz)
        return cls(tz, frozen)

    def since(self, moment: datetime | None) -> float:
        """Seconds from `moment` to now, never negative (a frozen now may lie before it)."""
        if moment is None:
            return 0.0
        return max(0.0, (self.now() - moment).total_seconds())

    def until(self, moment: datetime | None) -> float:
        if moment is None:
            return 0.0
        return max(0.0, (moment - self.now()).total_seconds())

    def short(self, moment: datetime | None) -> str:
        """HH:MM:SS today, else MM-DD HH:MM: absolute, so tables need no ticking."""
        if moment is None:
            return "—"
        local = moment.astimezone(self.tz)
        if local.date() == self.now().date():
            return local.strftime("%H:%M:%S")
        return local.strftime("%m-%d %H:%M")


def compact_stamp(line: str, clock: Clock) -> str:
    """A log line with its leading ISO stamp cut to HH:MM:SS (MM-DD HH:MM:SS on another
    day): the full stamp costs a third of an 80-column pane."""
    head, _, rest = line.partition(" ")
    moment = parse_time(head) if len(head) >= 19 and head[10:11] == "T" else None
    if moment is None:
        return line
    local = moment.astimezone(clock.tz)
    fmt = "%H:%M:%S" if local.date() == clock.now().date() else "%m-%d %H:%M:%S"
    return f"{local.strftime(fmt)} {rest}"


def log_display(line: str, clock: Clock) -> str:
    """A keeper-log line as the Log pane shows it: the stamp cut to the time of day, and
    the level only when it is not INFO (WARN and ERROR stand out; the outcome of a run
    fits at 80 columns)."""
    line = compact_stamp(line, clock)
    stamp, _, rest = line.partition(" ")
    level, _, message = rest.partition(" ")
    if level in LEVELS:
        message = message.lstrip(" ")
        return f"{stamp} {message}" if level == "INFO" else f"{stamp} {level} {message}"
    return line


def run_time(moment: datetime | None, clock: Clock) -> str:
    """When a run started, in at most nine cells: 19:06:20 today, Sat 19:06 in the last
    week, Nov 20 before that."""
    if moment is None:
        return "—"
    local = moment.astimezone(clock.tz)
    days = (clock.now().date() - local.date()).days
    if days == 0:
        return local.strftime("%H:%M:%S")
    if 0 < days < 7:
        return local.strftime("%a %H:%M")
    return local.strftime("%b %d")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def duration_text(ms: int | float | None) -> str:
    return "—" if ms is None else format_duration(ms / 1000)


def home_short(path: Path) -> str:
    """~/vault instead of /home/someone/vault: the header has little room."""
    text = str(path)
    home = str(Path.home())
    if text == home or text.startswith(home + os.sep):
        return "~" + text[len(home) :]
    return text
