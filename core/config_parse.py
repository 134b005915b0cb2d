"""tomllib, one job table at a time where that is sure to read the same.

tomllib keeps bookkeeping for every key it has read until the whole document is read (a
dict and two sets per key): for 10,000 jobs that peaks near 20 MB, three times what it
returns, and the allocator keeps those pages for good once the long-lived config is
scattered among them. Read a job at a time, there is one job's bookkeeping at a time.
A document that might not read the same in pieces is read whole, as is one with a
mistake: its errors are tomllib's own, from the whole text.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# A table header at the start of a line: where a piece may end.
_HEADER = re.compile(r"^\[", re.MULTILINE)
# A job's table in the usual style: [jobs.NAME], or one of its sub-tables [jobs.NAME.env].
_JOB_HEADER = re.compile(r"\[jobs\.([A-Za-z0-9_-]+)([.\]])")
# A line that opens with a bracket: a header, or part of a value spanning lines.
_BRACKET_LINE = re.compile(r"^[ \t]*\[", re.MULTILINE)


@dataclass
class Parsed:
    document: dict[str, Any]
    # Read in pieces: each job table's line, where core/config_lines.py would place it;
    # read whole: None.
    job_lines: dict[str, int] | None = None


@dataclass
class _Piece:
    job: str | None  # None: text outside any job
    text: str
    line: int  # the job table's line (its [jobs.NAME] header, else its first header)


def parse_toml(text: str) -> Parsed:
    """tomllib.loads(text): the same document, or the same error."""
    return _in_pieces(text) or Parsed(tomllib.loads(text))


def _in_pieces(text: str) -> Parsed | None:
    """The document read a job at a time; None where that might not read as it would
    whole. Each piece is cut where a whole reading would be between two statements: a
    cut anywhere else leaves the piece before it ending inside a string, an array or an
    inline table, which tomllib refuses."""
    rest: list[str] = []
    head_keys: list[str] = []
    jobs: dict[str, Any] = {}
    lines: dict[str, int] = {}
    seen: dict[str, str] = {}
    try:
        for piece in _pieces(text):
            if piece.job is not None and not _only_own_headers(piece.text, piece.job):
                return None
            parsed = tomllib.loads(piece.text)
            if piece.job is None:
                # Read alone as well as with the rest: one that does not end between two
                # statements would otherwise run on into the next in the joined text.
                if "jobs" in parsed:
                    return None
                if not jobs:
                    head_keys.extend(parsed)
                rest.append(piece.text)
                continue
            table = parsed.get("jobs")
            if piece.job in jobs or list(parsed) != ["jobs"] or list(table or ()) != [piece.job]:
                return None
            jobs[piece.job] = _compact(parsed["jobs"][piece.job], seen)
            lines[piece.job] = piece.line
        if not jobs:
            return None
        others = tomllib.loads("".join(rest))
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return None
    # The top-level tables in the order a whole reading gives: as first defined.
    document = {key: others[key] for key in head_keys if key in others}
    document["jobs"] = jobs
    document.update((key, value) for key, value in others.items() if key not in document)
    return Parsed(document, lines)


def _compact(table: dict[str, Any], seen: dict[str, str]) -> dict[str, Any]:
    """A job's table with its keys and string values held once for all jobs: tomllib
    makes each its own copy ("command", "every", "1h"...), and those still alive when
    the whole document is read leave holes the allocator keeps (10,000 jobs: ~1.8 MB)."""
    return {
        sys.intern(key): seen.setdefault(value, value) if type(value) is str else value
        for key, value in table.items()
    }


def _pieces(text: str) -> Iterator[_Piece]:
    """The text cut before each header that starts a line: a job's run of tables is one
    piece, the text between jobs another."""
    start, current = 0, _Piece(None, "", 0)
    line, counted = 1, 0  # the line of text[counted]
    for header in _HEADER.finditer(text):
        at = header.start()
        line, counted = line + text.count("\n", counted, at), at
        job = _JOB_HEADER.match(text, at)
        name = job.group(1) if job else None
        if name == current.job:
            if job and job.group(2) == "]":
                current.line = line  # [jobs.NAME] after one of its sub-tables
            continue  # another table of the same job, or more text outside jobs
        if at > start:
            current.text = text[start:at]
            yield current
        start, current = at, _Piece(name, "", line)
    current.text = text[start:]
    yield current


def _only_own_headers(piece: str, name: str) -> bool:
    """No line of a job's piece opens with a bracket but its own headers: not a [jobs]
    table, a quoted or spaced header, an array of tables or a nested array, which could
    reach past the piece or would need more care than they are worth."""
    own = (f"[jobs.{name}]", f"[jobs.{name}.")
    return all(
        match.end() - 1 == match.start() and piece.startswith(own, match.start())
        for match in _BRACKET_LINE.finditer(piece)
    )
