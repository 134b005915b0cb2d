"""on_success / on_failure: a short command after a run, with the run's environment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from watchkeeper.core import tuning
from watchkeeper.core.config import Command
from watchkeeper.core.environment import Masker
from watchkeeper.core.history import RunRecord
from watchkeeper.core.host import Host
from watchkeeper.core.output import OutputSink
from watchkeeper.core.runner import RunOutcome, RunSpec
from watchkeeper.core.runprep import argv
from watchkeeper.core.runtime import JobRuntime
from watchkeeper.core.seams import Executor, RunHandle


class Hooks:
    def __init__(self, host: Host, executor: Executor, on_idle: Callable[[], None]) -> None:
        self.host = host
        self.executor = executor
        self.on_idle = on_idle
        self.running: dict[str, RunHandle] = {}

    def start(
        self,
        runtime: JobRuntime,
        record: RunRecord,
        hook: Command,
        env: dict[str, str],
        masker: Masker,
    ) -> bool:
        """False when it could not start."""
        host = self.host
        which = "on_success" if record.status == "success" else "on_failure"
        sink = OutputSink(runtime.log, f"{record.id} {which}", masker, host.tz)
        spec = RunSpec(
            f"{record.id}-{which}",
            argv(hook),
            {**env, "WATCHKEEPER_STATUS": record.status},
            host.vault,
            tuning.HOOK_TIMEOUT,
            host.config.keeper.kill_grace,
        )
        try:
            hook_run = self.executor.run(spec, sink.feed)
        except OSError as error:
            host.log.error(
                f"{which} hook of run {record.id} ({record.job}) cannot start: {error.strerror}"
            )
            return False
        self.running[spec.run_id] = hook_run

        def done(future: asyncio.Future[RunOutcome]) -> None:
            outcome = future.result()
            sink.flush()
            level = host.log.info if outcome.status == "success" else host.log.warning
            level(
                f"{which} hook of run {record.id} ({record.job}) {outcome.status}"
                + (f": {outcome.error}" if outcome.error else "")
            )
            self.running.pop(spec.run_id, None)
            self.on_idle()

        hook_run.done.add_done_callback(done)
        return True

    def hurry(self) -> None:
        for hook in list(self.running.values()):
            hook.stop("cancelled", "keeper stopped")
