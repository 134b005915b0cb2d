"""The `[notify.NAME]` tables: where notifications go (an Apprise URL, a webhook or a
command) and which events each channel wants. Parsed here so config.py stays the checker
of the one-host keys; the jobs' and the keeper's `notify = [...]` lists are checked
against these names in config_notify_check.py."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from watchkeeper.core.config_table import convert_table
from watchkeeper.core.config_values import (
    DAY,
    LABEL,
    Convert,
    Problems,
    duration_between,
    hint,
    show,
)
from watchkeeper.core.config_values import _command as command
from watchkeeper.core.config_values import _integer as integer

EVENTS = ("failure", "retries_exhausted", "recovered", "quota_refused", "missed", "lost")
TARGETS = ("url", "webhook", "command")
# A flapping job gets one message per window, the rest in a digest at its end.
DEFAULT_RATE_WINDOW = 300.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3


@dataclass(frozen=True)
class NotifyChannel:
    name: str
    kind: str  # one of TARGETS
    # An Apprise or webhook URL (shown only masked, through notify_mask), or a command.
    target: str | tuple[str, ...]
    events: tuple[str, ...] = EVENTS
    rate_window: float = DEFAULT_RATE_WINDOW
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS


def _events(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(event, str) for event in value):
        raise ValueError(f"expected a list of events, got {show(value)}")
    for event in value:
        if event not in EVENTS:
            listed = ", ".join(EVENTS)
            raise ValueError(f"unknown event {event!r}{hint(event, EVENTS)}: one of {listed}")
    return tuple(dict.fromkeys(value))


def _from_env(value: str) -> bool:
    """A URL that is a ${VAR} from its start: its scheme is known only at send time."""
    from watchkeeper.core.config_http import VARIABLE  # a channel's only: not at every start

    return VARIABLE.match(value) is not None


def _url(value: object) -> str:
    if not isinstance(value, str) or ("://" not in value and not _from_env(value)):
        raise ValueError(f"expected an Apprise URL like 'ntfy://topic', got {show(value)}")
    if importlib.util.find_spec("apprise") is None:
        raise ValueError("an Apprise URL needs the notify extra: pip install 'watchkeeper[notify]'")
    return value


def _webhook(value: object) -> str:
    if not isinstance(value, str) or not (
        value.startswith(("http://", "https://")) or _from_env(value)
    ):
        raise ValueError(f"expected an http:// or https:// URL, got {show(value)}")
    return value


CHANNEL_FIELDS: dict[str, Convert] = {
    "url": _url,
    "webhook": _webhook,
    "command": command,
    "events": _events,
    "rate_window": duration_between(0, DAY),
    "timeout": duration_between(0.1, 600),
    "attempts": integer(1, 20),
}


def parse_notify(value: object) -> dict[str, NotifyChannel]:
    """The [notify] table of channels; Problems lists every bad key by its path under it."""
    if not isinstance(value, dict):
        raise Problems([((), f"expected tables like [notify.ops], got {show(value)}")])
    problems: list[tuple[tuple[str, ...], str]] = []
    channels: dict[str, NotifyChannel] = {}
    for name, body in value.items():
        if not LABEL.fullmatch(name):
            problems.append(((name,), f"bad channel name {name!r}: use letters, digits, '_', "
                             "'.' and '-', starting with a letter or digit"))
        if not isinstance(body, dict):
            problems.append(((name,), f"expected a table [notify.{name}], got {show(body)}"))
            continue
        found = len(problems)
        fields = _fields(name, body, problems)
        targets = [key for key in TARGETS if key in body]
        if len(targets) != 1:
            what = "both " + " and ".join(targets) if targets else "none of them"
            problems.append(((name,), f"needs exactly one of url, webhook, command; got {what}"))
        if len(problems) == found:
            kind = targets[0]
            extra = {key: fields[key] for key in fields if key not in TARGETS}
            channels[name] = NotifyChannel(name, kind, fields[kind], **extra)
    if problems:
        raise Problems(problems)
    return channels


def _fields(
    name: str, body: dict[str, object], problems: list[tuple[tuple[str, ...], str]]
) -> dict[str, Any]:
    """Each key's converted value (typed per CHANNEL_FIELDS, so Any to the dataclass)."""
    fields, found = convert_table(body, CHANNEL_FIELDS)
    problems.extend(((name, *inner), message) for inner, message in found)
    return fields
