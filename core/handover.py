"""Handing whole files to `on_files` jobs: once each, in batches, none lost.

A file matching a job's globs waits in that job's pending set until a run claims it;
the run's outcome goes to the ledger. A failed file goes back in line until it has
failed `quarantine_after` times, then it is moved to Needs_Action/ with a note. A run
cut off by the keeper's death has no outcome: its files go again (at-least-once).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watchkeeper.core.config import JobConfig
from watchkeeper.core.filewatch import Settler, compile_glob, is_work_file, scan
from watchkeeper.core.history import RunRecord
from watchkeeper.core.ledger import Ledger, file_digest, unique_destination
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.names import json_text, shell_word, shown
from watchkeeper.core.titles import UniqueTitles

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
        self.unique = UniqueTitles(vault, ledger, log)

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
            if files.config.unique_by == "title" and self.unique.duplicate(name, rel, digest):
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
        batch: list[str] = []
        size, limit = 0, MAX_BATCH_FILES
        # Files whose run was cut off go in batches of their own, as small as their
        # ledger says; the others are not held to that.
        cut_off: bool | None = None
        for rel, digest in list(files.pending.items()):
            state = self.ledger.state(job, rel, digest)
            own = state.batch_limit if state is not None else None
            if cut_off is not None and cut_off != (own is not None):
                continue
            cost = _listed_size(rel)
            if batch and (len(batch) >= min(limit, own or limit) or size + cost > MAX_BATCH_BYTES):
                break
            if not (self.vault / rel).exists():
                files.pending.pop(rel)
                continue
            files.in_flight[rel] = (files.pending.pop(rel), run_id)
            batch.append(rel)
            size += cost
            cut_off = own is not None
            limit = min(limit, own or limit)
        return batch

    def cut_off(self, runs: Iterable[RunRecord]) -> None:
        """Runs a dead keeper left open, just closed as interrupted: their files go again
        (at-least-once), in batches half the size of the run's, and each interruption
        counts toward quarantine_after, so no batch is handed whole again and again."""
        for record in runs:
            files = self.jobs.get(record.job)
            if files is None or not record.files:
                continue
            limit = max(1, len(record.files) // 2)
            for rel in record.files:
                try:
                    digest = file_digest(self.vault / rel)
                except OSError:
                    continue  # gone, or replaced by a new arrival: nothing to hand again
                if not self.ledger.wants(record.job, rel, digest):
                    continue
                self.ledger.record(record.job, rel, digest, "interrupted", record.id, batch=limit)
                files.errors.setdefault(rel, []).append(
                    f"{record.id}: interrupted (the keeper stopped while it ran)"
                )
                state = self.ledger.state(record.job, rel, digest)
                if state is not None and state.failures >= files.config.quarantine_after:
                    self._quarantine(files, rel, digest, record.id)

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
            self.log.error(f"cannot quarantine {shown(rel)}: {error.strerror}")
            return
        location = destination.relative_to(self.vault).as_posix()
        note = destination.with_name(destination.name + ".why.md")
        count = files.config.quarantine_after
        lines = [
            f"# Quarantined: {shown(destination.name)}",
            "",
            f"- Came from: `{shown(rel)}`",
            f"- Job: `{files.config.name}`",
            f"- Failed or interrupted runs on this file: {count} (quarantine_after = {count})",
            f"- Last run: `{run_id}`",
            "",
            "## Failures",
            "",
            *[f"- {line}" for line in errors or [f"{run_id}: failure"]],
            "",
            "See each run's output with `watchkeeper logs " + files.config.name + "`.",
            "",
            f"Put it back in line with: `watchkeeper requeue {shell_word(location)}`",
            "",
        ]
        if shown(rel) != rel:
            lines[3:3] = ["- Its name is not valid UTF-8: each \ufffd above stands for such a byte"]
        try:
            note.write_text("\n".join(lines), encoding="utf-8")
        except OSError as error:
            self.log.error(f"cannot write {shown(str(note))}: {error.strerror}")
        self.ledger.record(files.config.name, rel, digest, "quarantined", run_id, note=location)
        self.log.warning(
            f"{shown(rel)} quarantined to {shown(location)}"
            f" after {count} failed run(s) of {files.config.name}"
        )


def requeue(vault: Path, ledger: Ledger, location: str) -> str:
    """Put a quarantined file back where it came from; returns that path."""
    found = ledger.quarantined(location)
    if found is None:
        raise LookupError(f"{shown(location)} is not a quarantined file (see Logs/files.jsonl)")
    job, original, digest = found
    source, target = vault / location, vault / original
    if not source.exists():
        raise FileNotFoundError(f"{shown(str(source))} is gone")
    if source != target:
        if target.exists():
            raise FileExistsError(f"{shown(str(target))} exists already; move one of them away")
        target.parent.mkdir(parents=True, exist_ok=True)
    ledger.record(job, original, digest, "requeued")
    if source != target:
        os.replace(source, target)
    note = source.with_name(source.name + ".why.md")
    note.unlink(missing_ok=True)
    return original


def _listed_size(rel: str) -> int:
    """Bytes the path takes in WATCHKEEPER_FILES_JSON, with its quotes and comma: never
    less than in WATCHKEEPER_FILES."""
    return len(json_text(json.dumps(rel, ensure_ascii=False)).encode()) + 1


# What str.splitlines() breaks a line at, not only "\n": a name holding any of these is
# written as a JSON string, so that no reader splits it.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def files_env(files: list[str]) -> dict[str, str]:
    """WATCHKEEPER_FILES, one path a line; a path that holds a line break (or starts
    with a quote) is written as a JSON string, so no name can pose as another path.
    WATCHKEEPER_FILES_JSON carries the same list as a JSON array.

    A name that is not valid UTF-8 (a str with lone surrogates) goes into
    WATCHKEEPER_FILES as its raw bytes (the child's environment is encoded with
    surrogateescape), and into JSON as \\udcXX escapes: valid UTF-8 JSON, which Python's
    json.loads turns back into the str that os.fsencode gives the exact name from."""

    def line(rel: str) -> str:
        if rel.startswith('"') or _LINE_BREAK.search(rel):
            return json_text(json.dumps(rel, ensure_ascii=False))
        return rel

    return {
        "WATCHKEEPER_FILES": "\n".join(line(rel) for rel in files),
        "WATCHKEEPER_FILES_JSON": json_text(json.dumps(files, ensure_ascii=False)),
    }
