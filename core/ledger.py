"""Logs/files.jsonl: which file (vault-relative path + content hash) each job was handed,
and how that ended. It makes hand-over exactly once across restarts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.core.appender import Appender, Log
from watchkeeper.core.history import iso, utc_now
from watchkeeper.core.names import json_text

LEDGER_NAME = "files.jsonl"
# An operator's word on an item in Needs_Action/ (core/triage.py): a line with no job
# ("job": ""), kept for the record; it changes nothing a job is handed.
DECISIONS = ("approved", "dismissed")


@dataclass
class FileState:
    digest: str
    done: bool = False
    failures: int = 0  # interruptions (runs cut off by a keeper's death) count too
    quarantined_to: str | None = None
    batch_limit: int | None = None  # since an interruption: handed in batches this small
    duplicate_of: str | None = None  # unique_by: the item holding its title (not handed)


class Ledger:
    """The ledger read into memory, and appended to as hand-overs end.

    Lines that cannot be written are kept and written later (see core.appender), and
    logged to `log`; without a `log`, a failed write raises.
    """

    def __init__(self, path: Path, log: Log | None = None) -> None:
        self.path = path
        self.bad_lines = 0
        self._files: dict[tuple[str, str], FileState] = {}
        # Opened for each write: a ledger moved or replaced meanwhile is written where it is.
        self.out: Appender[None] = Appender("file ledger", self._path_of, log, keep_open=False)

    def _path_of(self, _key: None) -> Path:
        return self.path

    def load(self) -> None:
        """Read the ledger again; lines still waiting for the disk count as written."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        self.replay([*raw.splitlines(), *self.out.waiting()])

    def replay(self, lines: Iterable[str | bytes]) -> None:
        """Know exactly what these ledger lines say, in order; unreadable ones are
        counted. Each store of the ledger (files.jsonl, a cluster's database) reads its
        lines and hands them here."""
        self._files.clear()
        self.bad_lines = 0
        for line in lines:
            try:
                entry = json.loads(line)
                self._apply(
                    entry["job"],
                    entry["path"],
                    entry["hash"],
                    entry["outcome"],
                    entry.get("note"),
                    entry.get("batch"),
                )
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1

    def _apply(
        self,
        job: str,
        path: str,
        digest: str,
        outcome: str,
        note: str | None,
        batch: int | None = None,
    ) -> None:
        key = (job, path)
        if outcome == "gone":
            self._files.pop(key, None)
            return
        if outcome in DECISIONS:
            return
        state = self._files.get(key)
        if state is None or state.digest != digest:
            state = self._files[key] = FileState(digest)
        if outcome == "success":
            state.done, state.failures, state.batch_limit = True, 0, None
        elif outcome == "failure":
            state.failures += 1
        elif outcome == "interrupted":
            state.failures += 1
            state.batch_limit = max(1, batch) if isinstance(batch, int) else 1
        elif outcome == "quarantined":
            state.quarantined_to = note
        elif outcome == "duplicate":
            state.duplicate_of = note or "?"
        elif outcome == "requeued":
            state.done, state.failures, state.quarantined_to = False, 0, None
            state.batch_limit = None
        else:
            raise ValueError(outcome)

    def record(
        self,
        job: str,
        path: str,
        digest: str,
        outcome: str,
        run_id: str | None = None,
        note: str | None = None,
        batch: int | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> None:
        text = entry_text(job, path, digest, outcome, run_id, note, batch, by, reason)
        # First the ledger's own store (which may refuse by raising), then what is known,
        # then Logs/files.jsonl (the file itself, or the export beside a database).
        exported = self.store_entry(text, f"{path} {outcome} for {job}")
        self._apply(job, path, digest, outcome, note, batch)
        if exported:
            self.out.add(None, (text + "\n").encode())
            self.out.write()

    def store_entry(self, text: str, label: str) -> bool:
        """Keep one line where this ledger lives; True: also write it to files.jsonl. Here
        the file is where it lives."""
        return True

    def state(self, job: str, path: str, digest: str) -> FileState | None:
        """What is known of this exact content at this path for this job."""
        state = self._files.get((job, path))
        return state if state is not None and state.digest == digest else None

    def wants(self, job: str, path: str, digest: str) -> bool:
        state = self.state(job, path, digest)
        return state is None or not (state.done or state.quarantined_to or state.duplicate_of)

    def forget(self, path: str) -> None:
        """The file left this path: whatever arrives there next is a new arrival."""
        for job, known in list(self._files):
            if known == path and self._files[(job, known)].quarantined_to is None:
                self.record(job, known, self._files[(job, known)].digest, "gone")

    def quarantined(self, location: str) -> tuple[str, str, str] | None:
        """(job, original path, hash) of the file quarantined to `location`, if any."""
        for (job, path), state in self._files.items():
            if state.quarantined_to == location:
                return job, path, state.digest
        return None


def entry_text(
    job: str,
    path: str,
    digest: str,
    outcome: str,
    run_id: str | None = None,
    note: str | None = None,
    batch: int | None = None,
    by: str | None = None,
    reason: str | None = None,
) -> str:
    """One ledger line (without its newline), the same in files.jsonl and in a cluster's
    database. `by` and `reason`: an operator's decision's who and why."""
    entry: dict[str, object] = {
        "at": iso(utc_now()),
        "job": job,
        "path": path,
        "hash": digest,
        "run": run_id,
        "outcome": outcome,
    }
    optional = {"note": note, "batch": batch, "by": by, "reason": reason}
    entry.update({key: value for key, value in optional.items() if value is not None})
    # json_text: a file name that is not UTF-8 is written as \udcXX escapes.
    return json_text(json.dumps(entry, ensure_ascii=False))


def file_digest(path: Path) -> str:
    # Here, not at the top: hashlib (OpenSSL's digests) held ~0.6 MB in every keeper,
    # most of which never hand a file to a job.
    import hashlib

    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def unique_destination(folder: Path, name: str) -> Path:
    """folder/name, or folder/'stem (2).ext' and so on when that is taken."""
    target = folder / name
    stem, dot, suffix = name.partition(".")
    counter = 2
    while target.exists() or target.is_symlink():
        target = folder / f"{stem} ({counter}){dot}{suffix}"
        counter += 1
    return target
