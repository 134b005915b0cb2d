"""The execution history's format: run records, the JSON line each is written as, and
the daily segment files (Logs/history/YYYY-MM-DD.jsonl, by UTC write day)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, overload

from watchkeeper.core.names import json_text

STATUSES = ("running", "success", "failure", "timeout", "skipped", "cancelled", "interrupted")
FINAL_STATUSES = frozenset(STATUSES) - {"running"}
# Status is never told by colour alone: every place that shows one shows glyph and word.
GLYPHS = {
    "running": "▶",
    "success": "✔",
    "failure": "✘",
    "timeout": "⧗",
    "skipped": "↷",
    "cancelled": "■",
    "interrupted": "⚡",
}


def status_label(status: str) -> str:
    """Glyph and word, e.g. "✘ failure"."""
    return f"{GLYPHS.get(status, '?')} {status}"


def utc_now() -> datetime:
    return datetime.now(UTC)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
@overload
def iso(moment: datetime | None) -> str | None: ...


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with millisecond precision, so strings sort as times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def elapsed_ms(seconds: float) -> int:
    """A duration in whole milliseconds, rounded: a run of 9.6 ms lasted 10 ms, not 9,
    and one that ran at all rarely shows 0."""
    return round(seconds * 1000)


@dataclass
class RunRecord:
    id: str
    job: str
    project: str
    started_at: datetime
    status: str
    trigger: str
    host: str
    completed_at: datetime | None = None
    duration_ms: int | None = None
    error: str | None = None
    cron: str | None = None
    attempt: int = 1
    exit_code: int | None = None
    files: list[str] = field(default_factory=list)
    # The run's parameters (secret-looking values masked); None: the job declares none.
    params: dict[str, str] | None = None
    # The branch a run with isolate = "worktree" worked on (core/worktree.py).
    worktree_branch: str | None = None

    @property
    def written_at(self) -> datetime:
        """When this line was written: the end for a final line, the start for a running one."""
        return self.completed_at or self.started_at

    def to_json(self) -> dict[str, Any]:
        # Field order is part of the format: readers may find fields by position.
        line: dict[str, Any] = {
            "id": self.id,
            "taskId": self.job,
            "taskName": self.job,
            "project": self.project,
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
            "status": self.status,
            "duration": self.duration_ms,
            "error": self.error,
            "cronExpression": self.cron,
            "worktreeBranch": self.worktree_branch,
            "trigger": self.trigger,
            "attempt": self.attempt,
            "exitCode": self.exit_code,
            "files": self.files,
            "host": self.host,
        }
        # Last, and only for a job with params: every other line stays as it was.
        if self.params is not None:
            line["params"] = self.params
        return line

    def to_line(self) -> bytes:
        """to_json() as one JSON line, exactly as json.dumps(ensure_ascii=False, compact)
        writes it, but put together field by field: a keeper writes two lines a run, and
        this takes a third of the dict-and-encoder's time (tests/test_history_line.py
        holds the two equal)."""
        string = _string
        # Each optional field written out rather than through a helper: two lines a run.
        done = self.completed_at
        completed = "null" if done is None else f'"{done.astimezone(UTC).isoformat("T", _MS)}"'
        # An int the usual way; a record read back may hold a float or a bool there.
        ms, code, attempt = self.duration_ms, self.exit_code, self.attempt
        duration = "null" if ms is None else str(ms) if type(ms) is int else _other(ms)
        error = "null" if (text := self.error) is None else string(text)
        cron = "null" if (text := self.cron) is None else string(text)
        branch = "null" if (text := self.worktree_branch) is None else string(text)
        exit_code = "null" if code is None else str(code) if type(code) is int else _other(code)
        tries = str(attempt) if type(attempt) is int else _other(attempt)
        started = self.started_at.astimezone(UTC).isoformat("T", _MS)
        text = (
            f'{{"id":{string(self.id)},"taskId":{(job := string(self.job))},'
            f'"taskName":{job},"project":{string(self.project)},'
            f'"startedAt":"{started}","completedAt":{completed},'
            f'"status":{string(self.status)},"duration":{duration},'
            f'"error":{error},"cronExpression":{cron},'
            f'"worktreeBranch":{branch},"trigger":{string(self.trigger)},'
            f'"attempt":{tries},"exitCode":{exit_code},'
            f'"files":[{",".join(map(string, self.files))}],"host":{string(self.host)}'
        )
        if self.params is not None:
            text += f',"params":{_other(self.params)}'
        text += "}\n"
        # A file name that is not UTF-8 (lone surrogates) is written as \udcXX escapes, as
        # is one in an error's text (which may quote a file or a server's answer).
        return json_text(text).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            id=data["id"],
            job=data["taskId"],
            project=data.get("project") or "",
            started_at=datetime.fromisoformat(data["startedAt"]),
            completed_at=parse_iso(data.get("completedAt")),
            status=data["status"],
            duration_ms=data.get("duration"),
            error=data.get("error"),
            cron=data.get("cronExpression"),
            trigger=data.get("trigger") or "manual",
            attempt=data.get("attempt") or 1,
            exit_code=data.get("exitCode"),
            files=list(data.get("files") or []),
            host=data.get("host") or "",
            worktree_branch=data.get("worktreeBranch"),
            params=_params(data.get("params")),
        )


def _params(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(name): str(text) for name, text in value.items()}


# json.dumps builds an encoder per call when given options.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_other = _LINE_ENCODER.encode  # any value exactly as json writes it
_string = encode_basestring  # a str as JSON with ensure_ascii=False
_MS = "milliseconds"

SEGMENT_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")


def segment_path(directory: Path, day: date) -> Path:
    return directory / f"{day.isoformat()}.jsonl"
