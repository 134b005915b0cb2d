"""The runs of `isolate = "worktree"` jobs on the keeper's loop: their worktree is made in
a thread before they are spawned and settled in a thread after they end, before their
final record (so the record, `after` chains and whoever waits see the base already
fast-forwarded). git never runs on the loop: a checkout of a big repository takes
seconds, and the loop keeps every other job's slots."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.core.faults import described
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.runner import RunOutcome, RunSpec
from watchkeeper.core.runtime import ActiveRun

# core/worktree.py is imported where a worktree is made or settled: a keeper with no
# isolated job (and so a local run of a plain one) never loads it.
if TYPE_CHECKING:
    from watchkeeper.core.worktree import Worktree

Ready = Callable[[ActiveRun, RunSpec], None]
Failed = Callable[[ActiveRun, str], None]
Ended = Callable[[ActiveRun, RunOutcome], None]


class Isolation:
    def __init__(self, vault: Path, log: KeeperLog) -> None:
        self.vault = vault
        self.log = log
        self.trees: dict[str, Worktree] = {}  # by run id, from made to settled

    def prepare(self, active: ActiveRun, spec: RunSpec, ready: Ready, failed: Failed) -> None:
        """Make the run's worktree, then `ready` it with the worktree as its cwd; `failed`
        with the reason if git could not."""
        from watchkeeper.core.worktree import create

        job, run_id = active.runtime.config, active.record.id
        made = asyncio.get_running_loop().run_in_executor(None, create, job, self.vault, run_id)

        def done(future: asyncio.Future[Worktree]) -> None:
            error = future.exception()
            if error is not None:
                failed(active, f"cannot make its worktree: {_reason(error)}")
                return
            tree = future.result()
            self.trees[run_id] = tree
            ready(active, replace(spec, cwd=tree.path))

        made.add_done_callback(done)

    def finish(self, active: ActiveRun, outcome: RunOutcome, ended: Ended) -> None:
        """Settle the run's worktree (core/worktree.py settle), say how in its job log,
        then `ended`. A run without one goes straight on."""
        tree = self.trees.pop(active.record.id, None)
        if tree is None:
            ended(active, outcome)
            return
        from watchkeeper.core.worktree import settle

        job = active.runtime.config
        settled = asyncio.get_running_loop().run_in_executor(
            None, settle, tree, job, outcome.status
        )

        def done(future: asyncio.Future[list[str]]) -> None:
            error = future.exception()
            lines = future.result() if error is None else [f"cannot settle: {_reason(error)}"]
            for line in lines:
                active.sink.note(f"⎇ worktree: {line}")
            if error is not None:
                self.log.error(f"run {active.record.id} of {job.name}: {lines[0]}")
            ended(active, outcome)

        settled.add_done_callback(done)

    def discard(self, active: ActiveRun) -> None:
        """A run whose process never started: its worktree goes as a failed run's does."""
        tree = self.trees.pop(active.record.id, None)
        if tree is None:
            return
        from watchkeeper.core.worktree import settle

        job = active.runtime.config
        settled = asyncio.get_running_loop().run_in_executor(None, settle, tree, job, "failure")

        def done(future: asyncio.Future[list[str]]) -> None:
            error = future.exception()
            said = future.result() if error is None else [f"cannot settle: {_reason(error)}"]
            self.log.info(f"run {active.record.id} of {job.name}: worktree: {'; '.join(said)}")

        settled.add_done_callback(done)


def _reason(error: BaseException) -> str:
    from watchkeeper.core.worktree import WorktreeError

    return str(error) if isinstance(error, WorktreeError) else described(error)
