"""`unique_by = "title"`: an `on_files` job is not handed a file whose title an item in
Needs_Action/, Plans/ or Done/ already has. The content hash stops the same bytes twice;
this stops the same work item written twice (a generator's second "Renew the cert").

A title is the file's first Markdown heading, else its name without `.md`; two titles
are the same when they are, case and runs of whitespace aside.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from watchkeeper.core.ledger import Ledger
from watchkeeper.core.logs import KeeperLog
from watchkeeper.core.names import shown

HELD_IN = ("Needs_Action", "Plans", "Done")
# A heading is looked for in the start of a file only: a title is written first.
HEAD_BYTES = 64 * 1024
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SPACE = re.compile(r"\s+")


def title_of(path: Path) -> str:
    """The first ATX heading (`# Title`) of the file, else its name without `.md`."""
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        head = b""
    for line in head.decode("utf-8", errors="replace").splitlines():
        found = _HEADING.match(line)
        if found and found.group(1).strip():
            return found.group(1).strip()
    name = path.name
    return name[:-3] if name.lower().endswith(".md") else name


def title_key(title: str) -> str:
    """What two titles are compared by: case- and whitespace-insensitive."""
    return _SPACE.sub(" ", title).strip().casefold()


def is_item(name: str) -> bool:
    """A work item, not a dot file or a note about one (`<name>.why.md`)."""
    return not name.startswith(".") and not name.endswith(".why.md")


class TitleIndex:
    """The titles of the items in some folders, each file read again only when its size
    or mtime changed since."""

    def __init__(self, vault: Path) -> None:
        self.vault = vault
        self._known: dict[str, tuple[int, int, str]] = {}  # rel -> (mtime_ns, size, key)

    def holder_of(self, key: str, besides: str, folders: Iterable[str]) -> str | None:
        """The vault-relative path of an item in `folders` whose title key is `key`,
        `besides` aside."""
        seen: set[str] = set()
        found: str | None = None
        for folder in dict.fromkeys(folders):
            try:
                entries = list(os.scandir(self.vault / folder))
            except OSError:
                continue
            for entry in entries:
                rel = f"{folder}/{entry.name}"
                try:
                    if not is_item(entry.name) or not entry.is_file():
                        continue
                    status = entry.stat()
                except OSError:
                    continue
                seen.add(rel)
                known = self._known.get(rel)
                if known is None or known[:2] != (status.st_mtime_ns, status.st_size):
                    known = (
                        status.st_mtime_ns,
                        status.st_size,
                        title_key(title_of(Path(entry.path))),
                    )
                    self._known[rel] = known
                if found is None and rel != besides and known[2] == key:
                    found = rel
        for rel in set(self._known) - seen:
            del self._known[rel]
        return found


class UniqueTitles:
    """Handover's check for jobs with unique_by = "title"."""

    def __init__(self, vault: Path, ledger: Ledger, log: KeeperLog) -> None:
        self.ledger = ledger
        self.log = log
        self.index = TitleIndex(vault)
        self.vault = vault
        # The keeper's: where approved items go ([vault] approve_to), held there too.
        self.approve_to: Callable[[], str] = lambda: "Plans"
        # The keeper's event bus, when one listens (item_decided, outcome duplicate).
        self.announce: Callable[..., Any] | None = None

    def duplicate(self, job: str, rel: str, digest: str) -> bool:
        """True (and a `duplicate` ledger line) when an item already has rel's title."""
        title = title_of(self.vault / rel)
        holder = self.index.holder_of(title_key(title), rel, (*HELD_IN, self.approve_to()))
        if holder is None:
            return False
        self.ledger.record(job, rel, digest, "duplicate", note=holder)
        self.log.info(
            f"{shown(rel)} not handed to {job}: its title {shown(title)!r} is that of"
            f" {shown(holder)} (unique_by = title)"
        )
        if self.announce is not None:
            self.announce(path=rel, outcome="duplicate", job=job, title=title, duplicate_of=holder)
        return True


class DuplicateMarks:
    """Which files the ledger last said are duplicates, for the console's marks: follows
    Logs/files.jsonl from where it read up to (a ledger replaced by a shorter one is read
    again from its start). Paths come as people see them (names.shown)."""

    def __init__(self, ledger: Path) -> None:
        self.path = ledger
        self._offset = 0
        self._marked: set[str] = set()

    def read(self) -> frozenset[str]:
        try:
            with self.path.open("rb") as file:
                if os.fstat(file.fileno()).st_size < self._offset:
                    self._offset, self._marked = 0, set()
                file.seek(self._offset)
                chunk = file.read()
        except OSError:
            return frozenset(self._marked)
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(whole)
        for line in whole.splitlines():
            try:
                entry = json.loads(line)
                path, outcome = entry["path"], entry["outcome"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(path, str):
                continue
            if outcome == "duplicate":
                self._marked.add(shown(path))
            else:
                self._marked.discard(shown(path))
        return frozenset(self._marked)
