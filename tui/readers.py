"""What the console reads, each in a thread worker so the screen never waits on a disk or
the keeper: snapshots, the vault's folders, run starts of the last hour, history pages,
log tails and the config. Each hands its result back on the app's thread."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import history as hist
from core.config import ConfigError, load_config
from core.quota import started as run_counted
from core.tail import last_lines
from core.vault import summarize_all

if TYPE_CHECKING:
    from tui.app import ConsoleApp

LOG_TAIL = 500


class Readers:
    def __init__(self, app: ConsoleApp) -> None:
        self.app = app

    def _worker(self, function: Any, group: str, exclusive: bool = True) -> None:
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

    def history(self, request: int, job: str | None, status: str | None, limit: int) -> None:
        app = self.app

        def read() -> None:
            result = app.client.history(hist.Query(job=job, status=status, limit=limit))
            records = [record.to_json() for record in result.records]
            app.call_from_thread(show, records, len(records) >= limit)

        def show(records: list[dict[str, Any]], full: bool) -> None:
            app.main.history_pane.show_page(request, records, full)
            app.model.dirty.add("history")

        self._worker(read, "history")

    def log(self, request: int, source: str) -> None:
        app = self.app
        path = self.log_path(source)

        def read() -> None:
            lines = last_lines(path, LOG_TAIL)
            app.call_from_thread(app.main.log_pane.show_tail, request, lines)

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
