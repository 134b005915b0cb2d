"""Handing whole files to `on_files` jobs: exactly once, in batches, none lost.

A file matching a job's globs waits in that job's pending set until a run claims it;
the run's outcome goes to the ledger. A failed file goes back in line until it has
failed `quarantine_after` times, then it is moved to Needs_Action/ with a note.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import JobConfig
from core.filewatch import Settler, compile_glob, is_work_file, scan
from core.ledger import Ledger, file_digest, unique_destination
from core.logs import KeeperLog

# One run's WATCHKEEPER_FILES (and its JSON twin) must stay well under the kernel's
# 128 KiB limit for a single environment string; files beyond it wait for the next run.
MAX_BATCH_BYTES = 60_000
MAX_BATCH_FILES = 1000
QUARANTINE_FOLDER = "Needs_Action"


@dataclass
class JobFiles:
    config: JobConfig
    globs: list[re.Pattern[str]]
    pending: dict[str, str] = field(default_factory=dict)  # rel -> digest, arrival order
    in_flight: dict[str, tuple[str, str]] = field(default_factory=dict)  # rel -> (digest, run)
    errors: dict[str, list[str]] = field(default_factory=dict)  # rel -> "run: error" lines


class Handover:
    def __init__(
        self, vault: Path, ledger: Ledger, log: KeeperLog, ready: Callable[[str], None]
    ) -> None:
        self.vault = vault
        self.ledger = ledger
        self.log = log
        self.ready = ready
        self.jobs: dict[str, JobFiles] = {}
        self.settler = Settler(self._whole)

    def configure(self, jobs: dict[str, JobConfig]) -> None:
        """Start or reload: keep what is pending or in flight for jobs that stay."""
        current = {}
        for name, job in jobs.items():
            if not job.on_files:
                continue
            files = self.jobs.get(name) or JobFiles(job, [])
            files.config = job
            files.globs = [compile_glob(pattern) for pattern in job.on_files]
            current[name] = files
        self.jobs = current

    @property
    def settling(self) -> bool:
        return self.settler.busy

    @property
    def patterns(self) -> list[str]:
        return [pattern for files in self.jobs.values() for pattern in files.config.on_files]

    def rescan(self) -> None:
        """Offer every matching file already there: at start, and after a requeue."""
        for rel in scan(self.vault, self.patterns):
            self.offer(rel)

    def _matching(self, rel: str) -> list[JobFiles]:
        return [files for files in self.jobs.values() if any(g.fullmatch(rel) for g in files.globs)]

    def offer(self, rel: str) -> None:
        """A file appeared or changed: hand it over once it is whole."""
        matching = self._matching(rel)
        if not matching or not is_work_file(rel.rsplit("/", 1)[-1]):
            return
        settle = min(files.config.settle for files in matching)
        self.settler.offer(self.vault, rel, settle)

    def gone(self, rel: str) -> None:
        if (self.vault / rel).exists():
            return  # replaced in place: the following "added" event offers it
        for files in self.jobs.values():
            files.pending.pop(rel, None)
        self.ledger.forget(rel)

    def _whole(self, rel: str) -> None:
        try:
            digest = file_digest(self.vault / rel)
        except OSError:
            return  # gone again before we could read it
        for files in self._matching(rel):
            name = files.config.name
            flying = files.in_flight.get(rel)
            if flying is not None and flying[0] == digest:
                continue
            if not self.ledger.wants(name, rel, digest) and self._requeued_elsewhere(
                name, rel, digest
            ):
                self.ledger.load()
            if not self.ledger.wants(name, rel, digest) or files.pending.get(rel) == digest:
                continue
            files.pending[rel] = digest
            self.ready(name)

    def _requeued_elsewhere(self, job: str, rel: str, digest: str) -> bool:
        """A quarantined file back at its old path was requeued by another process
        (`watchkeeper requeue`): the ledger on disk knows, ours not yet."""
        state = self.ledger.state(job, rel, digest)
        return state is not None and state.quarantined_to is not None

    def has_pending(self, job: str) -> bool:
        files = self.jobs.get(job)
        return bool(files and files.pending)

    def claim(self, job: str, run_id: str) -> list[str]:
        """Take a batch of pending files for a starting run."""
        files = self.jobs.get(job)
        if files is None:
            return []
        batch, size = [], 0
        for rel in list(files.pending):
            if batch and (len(batch) >= MAX_BATCH_FILES or size + len(rel) + 1 > MAX_BATCH_BYTES):
                break
            if not (self.vault / rel).exists():
                files.pending.pop(rel)
                continue
            files.in_flight[rel] = (files.pending.pop(rel), run_id)
            batch.append(rel)
            size += len(rel.encode()) + 1
        return batch

    def carry(self, job: str, files_of_run: list[str], run_id: str) -> None:
        """A retry takes over its failed attempt's files."""
        files = self.jobs.get(job)
        if files is None:
            return
        for rel in files_of_run:
            if rel in files.in_flight:
                files.in_flight[rel] = (files.in_flight[rel][0], run_id)

    def settle_run(
        self,
        job: str,
        run_id: str,
        handed: list[str],
        status: str,
        error: str | None,
        retrying: bool,
    ) -> bool:
        """Record how the run ended for each of its files. True when some went back in
        line (the caller starts another run for them later)."""
        files = self.jobs.get(job)
        if files is None:
            return False
        requeued = False
        quarantine_after = files.config.quarantine_after
        for rel in handed:
            digest, _ = files.in_flight.get(rel, (None, None))
            if digest is None:
                continue
            if status == "success":
                files.in_flight.pop(rel)
                files.errors.pop(rel, None)
                self.ledger.record(job, rel, digest, "success", run_id)
                continue
            if status in ("failure", "timeout"):
                self.ledger.record(job, rel, digest, "failure", run_id)
                files.errors.setdefault(rel, []).append(
                    f"{run_id}: {status}" + (f" ({error})" if error else "")
                )
                state = self.ledger.state(job, rel, digest)
                if state is not None and state.failures >= quarantine_after:
                    files.in_flight.pop(rel)
                    self._quarantine(files, rel, digest, run_id)
                    continue
                if retrying:
                    continue
            files.in_flight.pop(rel)
            if (self.vault / rel).exists():
                files.pending[rel] = digest
                requeued = True
        return requeued

    def _quarantine(self, files: JobFiles, rel: str, digest: str, run_id: str) -> None:
        source = self.vault / rel
        folder = self.vault / QUARANTINE_FOLDER
        destination = source if source.parent == folder else unique_destination(folder, source.name)
        errors = files.errors.pop(rel, [])
        try:
            if destination != source:
                os.replace(source, destination)
        except OSError as error:
            self.log.error(f"cannot quarantine {rel}: {error.strerror}")
            return
        location = destination.relative_to(self.vault).as_posix()
        note = destination.with_name(destination.name + ".why.md")
        count = files.config.quarantine_after
        lines = [
            f"# Quarantined: {destination.name}",
            "",
            f"- Came from: `{rel}`",
            f"- Job: `{files.config.name}`",
            f"- Failed runs on this file: {count} (quarantine_after = {count})",
            f"- Last run: `{run_id}`",
            "",
            "## Failures",
            "",
            *[f"- {line}" for line in errors or [f"{run_id}: failure"]],
            "",
            "See each run's output with `watchkeeper logs " + files.config.name + "`.",
            "",
            f"Put it back in line with: `watchkeeper requeue {shlex.quote(location)}`",
            "",
        ]
        try:
            note.write_text("\n".join(lines), encoding="utf-8")
        except OSError as error:
            self.log.error(f"cannot write {note}: {error.strerror}")
        self.ledger.record(files.config.name, rel, digest, "quarantined", run_id, note=location)
        self.log.warning(
            f"{rel} quarantined to {location} after {count} failed run(s) of {files.config.name}"
        )


def requeue(vault: Path, ledger: Ledger, location: str) -> str:
    """Put a quarantined file back where it came from; returns that path."""
    found = ledger.quarantined(location)
    if found is None:
        raise LookupError(f"{location} is not a quarantined file (see Logs/files.jsonl)")
    job, original, digest = found
    source, target = vault / location, vault / original
    if not source.exists():
        raise FileNotFoundError(f"{source} is gone")
    if source != target:
        if target.exists():
            raise FileExistsError(f"{target} exists already; move one of them away first")
        target.parent.mkdir(parents=True, exist_ok=True)
    ledger.record(job, original, digest, "requeued")
    if source != target:
        os.replace(source, target)
    note = source.with_name(source.name + ".why.md")
    note.unlink(missing_ok=True)
    return original


def files_env(files: list[str]) -> dict[str, str]:
    """WATCHKEEPER_FILES, one path a line; a path that holds a line break (or starts
    with a quote) is written as a JSON string, so no name can pose as another path.
    WATCHKEEPER_FILES_JSON carries the same list as a JSON array."""

    def line(rel: str) -> str:
        if "\n" in rel or "\r" in rel or rel.startswith('"'):
            return json.dumps(rel, ensure_ascii=False)
        return rel

    return {
        "WATCHKEEPER_FILES": "\n".join(line(rel) for rel in files),
        "WATCHKEEPER_FILES_JSON": json.dumps(files, ensure_ascii=False),
    }
