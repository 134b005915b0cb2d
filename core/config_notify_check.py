"""The jobs' and the keeper's `notify = [...]` lists, checked against the `[notify.NAME]`
channels. Apart from core/config_notify.py, which parses those tables, so that a config
without one never loads it (its dataclass and converters were ~1 ms of every start)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from watchkeeper.core.config_values import Problems, hint

if TYPE_CHECKING:
    from watchkeeper.core.config_notify import NotifyChannel


class _Issues(Protocol):
    def add(self, keypath: tuple[str, ...], message: str) -> None: ...


class _Notifies(Protocol):
    """The keeper's settings or a job's (config.py's dataclasses, not imported: config.py
    imports this module)."""

    @property
    def notify(self) -> tuple[str, ...] | None: ...


def check_notify(
    issues: _Issues,
    value: object,
    keeper: _Notifies | None,
    jobs: Mapping[str, _Notifies] | None,
) -> dict[str, NotifyChannel]:
    """The channels, and every `notify = [...]` naming one checked against them."""
    channels: dict[str, NotifyChannel] = {}
    if value != {}:  # no [notify] table: parse_notify would find no channel, and no problem
        from watchkeeper.core.config_notify import parse_notify

        try:
            channels = parse_notify(value)
        except Problems as exc:
            for inner, message in exc.problems:
                issues.add(("notify", *inner), message)
    names = sorted(value) if isinstance(value, dict) else []
    users: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    if keeper is not None and keeper.notify:
        users.append((("keeper", "notify"), keeper.notify))
    for name, job in (jobs or {}).items():
        if job.notify:
            users.append((("jobs", name, "notify"), job.notify))
    for keypath, wanted in users:
        for channel in wanted:
            if channel not in names:
                where = f"{hint(channel, names)}" or (
                    f": add a [notify.{channel}] table" if not names else ""
                )
                known = f"; channels: {', '.join(names)}" if names and not where else ""
                issues.add(keypath, f"unknown notify channel {channel!r}{where}{known}")
    return channels
