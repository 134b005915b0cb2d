"""The Store the keeper has on one machine: JSONL history segments under Logs/history/,
the file ledger, Logs/state.toml. See core/seams.py for the seam it fills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from watchkeeper.core import history as hist
from watchkeeper.core.appender import Log
from watchkeeper.core.history import HistoryWriter, RunRecord
from watchkeeper.core.ledger import LEDGER_NAME, Ledger
from watchkeeper.core.quota import started
from watchkeeper.core.seams import LastRuns
from watchkeeper.core.state import RuntimeState, load_state, update_state
from watchkeeper.core.status import last_runs_in
from watchkeeper.core.turn_end import TurnEnd


class JsonlStore:
    def __init__(self, vault: Path, log: Log | None = None) -> None:
        self.vault = vault
        self.directory = vault / "Logs" / "history"
        self.history = HistoryWriter(self.directory, log)
        self.ledger = Ledger(vault / "Logs" / LEDGER_NAME, log)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.history.defer = TurnEnd.of(loop).defer
        self.history.retry_later = self.ledger.out.retry_later = loop.call_later

    def open_runs(self, since: datetime) -> list[RunRecord]:
        return hist.open_runs(self.directory, since)

    def starts_since(self, since: float) -> Iterator[tuple[str, float]]:
        # Read from each line's fields where they stand, as --status rebuilds its quota
        # view: the whole line is parsed only for a cancelled run (whether it began).
        for start in hist.starts_since(self.directory, datetime.fromtimestamp(since, UTC)):
            if started(start):
                yield start.job, start.at

    def recent_runs(self, query: hist.Query) -> list[RunRecord]:
        return hist.recent(self.directory, query).records

    def last_runs(self, jobs: Iterable[str], tz: ZoneInfo) -> LastRuns:
        return LastRuns(*last_runs_in(self.directory, jobs, tz))

    def prune(self, retention_days: int, today: date) -> list[Path]:
        return hist.prune(self.directory, retention_days, today)

    def load_state(self) -> RuntimeState:
        return load_state(self.vault)

    def update_state(self, change: Callable[[RuntimeState], None]) -> RuntimeState:
        return update_state(self.vault, change)

    def close(self) -> None:
        self.history.close()
        self.ledger.out.close()
