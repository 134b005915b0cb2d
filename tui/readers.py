"""What the console reads, each in a thread worker so the screen never waits on a disk or
the keeper: snapshots, the vault's folders, run starts of the last hour, history pages,
log tails and the config. Each hands its result back on the app's thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from watchkeeper.core import history as hist
from watchkeeper.core.config import ConfigError, load_config
from watchkeeper.core.quota import started as run_counted
from watchkeeper.core.tail import last_lines
from watchkeeper.core.titles import DuplicateMarks
from watchkeeper.core.vault import summarize_all
from watchkeeper.tui.host import ConsoleHost

LOG_TAIL = 500


class Readers:
    def __init__(self, app: ConsoleHost) -> None:
        self.app = app
        self.marks = DuplicateMarks(app.vault / "Logs" / "files.jsonl")

    def _worker(self, function: Callable[[], None], group: str, exclusive: bool = True) -> None:
        self.app.run_worker(
            function, thread=True, group=group, exclusive=exclusive, exit_on_error=False
        )

    def snapshot(self) -> None:
        """The keeper's state now: next-run times move without an event (a slot fired)."""
        app = self.app
        if not app.keeper_started or app.closing:
            return
        ended, counted = set(app.model.ended), app.model.counted

        def read() -> None:
            try:
                snapshot = app.client.snapshot()
            except Exception:
                return  # the keeper is stopping; the next snapshot or event will tell
            if not app.closing:
                app.call_from_thread(
                    app.model.load_snapshot, snapshot, app.clock.now(), ended, counted
                )

        self._worker(read, "snapshot")

    def vault(self) -> None:
        app = self.app

        def read() -> None:
            folders = {
                summary.name: {"count": summary.count, "newest": list(summary.newest)}
                for summary in summarize_all(app.vault)
            }
            app.call_from_thread(app.model.set_folders, folders)
            app.call_from_thread(app.model.set_duplicates, self.marks.read())

        self._worker(read, "vault")

    def starts(self) -> None:
        """Runs from before the console came up; the keeper reports every later one
        (its event stream opens before it starts anything)."""
        app = self.app

        def read() -> None:
            now = time.time()
            since = datetime.fromtimestamp(now - 3600).astimezone()
            records = hist.runs_since(app.vault / "Logs" / "history", since).records
            starts = [
                record.started_at.timestamp()
                for record in records
                if run_counted(record) and record.started_at.timestamp() < app.created
            ]
            app.call_from_thread(app.model.set_starts, starts, now)

        self._worker(read, "starts", exclusive=False)

    def history(
        self,
        query: hist.Query,
        deliver: Callable[[list[dict[str, Any]], bool], None],
    ) -> None:
        """A page of runs, newest first, and whether it came back full (more may exist)."""
        app = self.app

        def read() -> None:
            records = [record.to_json() for record in app.client.history(query).records]
            app.call_from_thread(deliver, records, len(records) >= query.limit)

        self._worker(read, "history")

    def log(self, source: str, deliver: Callable[[list[str]], None]) -> None:
        """The last lines of the keeper's log, or of a job's."""
        app = self.app
        path = self.log_path(source)

        def read() -> None:
            app.call_from_thread(deliver, last_lines(path, LOG_TAIL))

        self._worker(read, "log")

    def log_path(self, source: str) -> Path:
        logs = self.app.vault / "Logs"
        return logs / "watchkeeper.log" if source == "keeper" else logs / "jobs" / f"{source}.log"

    def config(self) -> None:
        """The console's own copy of the config, which the job screen falls back on; the
        keeper reads the file again on its own (it watches it)."""
        app = self.app
        path = app.config.path

        def read() -> None:
            try:
                config = load_config(path)
            except ConfigError as error:
                issues = "\n".join(str(issue) for issue in error.issues[:5])
                app.call_from_thread(
                    app.notify, issues, title="the config has errors", severity="error", timeout=15
                )
                return
            app.config = config
            app.call_from_thread(app.notify, f"{path.name}: {len(config.jobs)} job(s)")
            app.call_from_thread(self.snapshot)

        self._worker(read, "config")
