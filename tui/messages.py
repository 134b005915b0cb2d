"""The keeper's events as typed Textual messages, and the bridge that posts them.

Events arrive on the keeper's thread. The bridge turns each into a message and posts it
to the app (post_message is thread-safe). A keeper far busier than the screen can draw
(a job printing millions of lines) must not flood the app's queue, where keys wait too:

* log lines of a log the Log pane does not show are dropped at once; the others gather
  in a bounded buffer behind a single LogLines message, however many arrive meanwhile;
* past `limit` other messages not yet handled, the bridge drops events and, once the
  app has caught up, posts a single Resync so it refetches what it missed instead.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from watchkeeper.core.events import Event


class KeeperMessage(Message):
    """One keeper event, as it reached the console."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


class RunStarted(KeeperMessage):
    """data: the run's history record (status running), plus pid and lateness_ms."""


class RunFinished(KeeperMessage):
    """data: the run's final history record."""


class JobStateChanged(KeeperMessage):
    """data: the keeper's job_view of one job."""


class KeeperStateChanged(KeeperMessage):
    """data: {state: RUNNING | PAUSED | STOPPING | STOPPED}."""


class VaultChanged(KeeperMessage):
    """data: {folders: {name: {count, newest}}}."""


class LogLines(KeeperMessage):
    """Log lines gathered since the last such message; taken with KeeperBridge.take_lines.
    Each: {source: "keeper" or a job, line, and for the keeper log time and level}."""


class QuotaChanged(KeeperMessage):
    """data: {usage: [...], runs_last_hour}."""


class ConfigProblem(KeeperMessage):
    """data: {issues: [...]}: a reload was refused; the running config stays."""


class ConfigReloaded(KeeperMessage):
    """data: {jobs: N}: the config file was read again and is the running one now."""


class ItemDecided(KeeperMessage):
    """data: an item approved or dismissed (core.triage.DecisionJson), or a file held as
    a duplicate ({path, outcome: duplicate, job, title, duplicate_of})."""


class Resync(KeeperMessage):
    """Events were lost (the keeper's queue or ours overflowed): refetch everything."""


MESSAGES: dict[str, type[KeeperMessage]] = {
    "run_started": RunStarted,
    "run_finished": RunFinished,
    "job_state": JobStateChanged,
    "keeper_state": KeeperStateChanged,
    "vault_changed": VaultChanged,
    "log_line": LogLines,
    "quota": QuotaChanged,
    "config_error": ConfigProblem,
    "config_reloaded": ConfigReloaded,
    "resync": Resync,
    "item_decided": ItemDecided,
}


def to_message(event: Event) -> KeeperMessage | None:
    kind = MESSAGES.get(event.kind)
    return kind(event.data) if kind is not None else None


class KeeperBridge:
    """Posts keeper events to `target` as messages, never more than `limit` unhandled."""

    def __init__(self, target: MessagePump, limit: int = 2000, lines: int = 1000) -> None:
        self.target = target
        self.limit = limit
        self.log_source = "keeper"
        """The log the Log pane shows; set by the app, read here on the keeper's thread."""
        self.posted = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._overflowed = False
        self._lines: deque[dict[str, Any]] = deque(maxlen=lines)
        self._lines_posted = False

    def on_event(self, event: Event) -> None:
        """Called on the keeper's thread for each event."""
        if event.kind == "log_line":
            self._line(event.data)
            return
        message = to_message(event)
        if message is None:
            return
        with self._lock:
            if self._overflowed or self._in_flight >= self.limit:
                self._overflowed = True
                self.dropped += 1
                return
            self._in_flight += 1
            self.posted += 1
        self.target.post_message(message)

    def _line(self, data: dict[str, Any]) -> None:
        if data.get("source") != self.log_source:
            return
        with self._lock:
            self._lines.append(data)
            if self._lines_posted:
                return
            self._lines_posted = True
            self.posted += 1
        self.target.post_message(LogLines({}))

    def take_lines(self) -> list[dict[str, Any]]:
        """Called on the app's thread when it handles LogLines: every line gathered."""
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            self._lines_posted = False
        return lines

    def handled(self) -> None:
        """Called on the app's thread once per message it handled."""
        with self._lock:
            self._in_flight -= 1
            resync = self._overflowed and self._in_flight == 0
            if resync:
                self._overflowed = False
                self._in_flight += 1
                self.posted += 1
        if resync:
            self.target.post_message(Resync({"dropped": self.dropped}))
