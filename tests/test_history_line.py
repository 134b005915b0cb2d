"""RunRecord.to_line puts its JSON together field by field; it must write exactly what
json.dumps writes for to_json() (the history's readers, history_scan's positional reads
included, rely on that form)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from watchkeeper.core.history_format import RunRecord
from watchkeeper.core.names import json_text

ODD_TEXT = [
    "",
    "plain",
    'quote " and backslash \\',
    "new\nline\ttab\r",
    "\x00\x01\x1f control",
    "ünïcödé ✔ 日本語 🚀",
    "line\u2028separator\u2029and\x85next",
    "lone \udcff surrogate",
    "</script>",
]


def oracle(record: RunRecord) -> bytes:
    text = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":"))
    return (json_text(text) + "\n").encode()


def random_record(rng: random.Random) -> RunRecord:
    def maybe(value: object) -> object:
        return value if rng.random() < 0.5 else None

    def text() -> str:
        return rng.choice(ODD_TEXT) + str(rng.randrange(1000))

    zone = timezone(timedelta(hours=rng.choice([-5, 0, 2, 5.5])))
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 3e7))
    record = RunRecord(
        id=text(),
        job=text(),
        project=text(),
        started_at=started.astimezone(zone),
        status=rng.choice(["running", "success", "failure", "skipped"]),
        trigger=text(),
        host=text(),
        completed_at=maybe(started + timedelta(milliseconds=rng.randrange(10**7))),  # type: ignore[arg-type]
        duration_ms=maybe(rng.randrange(10**9)),  # type: ignore[arg-type]
        error=maybe(text()),  # type: ignore[arg-type]
        cron=maybe(text()),  # type: ignore[arg-type]
        attempt=rng.randrange(1, 10),
        exit_code=maybe(rng.randrange(-5, 256)),  # type: ignore[arg-type]
        files=[text() for _ in range(rng.randrange(3))],
        params=maybe({text(): text() for _ in range(rng.randrange(3))}),  # type: ignore[arg-type]
        worktree_branch=maybe(text()),  # type: ignore[arg-type]
    )
    return record


def test_to_line_writes_what_json_dumps_writes() -> None:
    rng = random.Random(15)
    for _ in range(3000):
        record = random_record(rng)
        assert record.to_line() == oracle(record), record


def manual_run(status: str, **fields: Any) -> RunRecord:
    return RunRecord(
        id="r1",
        job="j",
        project="p",
        started_at=datetime(2026, 3, 1, tzinfo=UTC),
        status=status,
        trigger="manual",
        host="h",
        **fields,
    )


def test_an_error_with_a_lone_surrogate_or_a_line_separator_is_one_readable_line() -> None:
    record = manual_run("failure", error="cannot read b\udcffd.md\u2028next")
    line = record.to_line()
    assert line.count(b"\n") == 1 and len(line.decode().splitlines()) == 1
    assert json.loads(line)["error"] == "cannot read b\udcffd.md\u2028next"


def test_a_duration_read_back_as_a_float_is_written_as_json_writes_it() -> None:
    # Not an int where the record's types say one: as a line read back may hold.
    record = manual_run("success", duration_ms=12.5, exit_code=True)
    assert record.to_line() == oracle(record)
    assert json.loads(record.to_line())["duration"] == 12.5
