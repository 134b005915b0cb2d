"""An operator's decision on an item waiting in Needs_Action/: approve it (move it to
Plans/, or the folder [vault] approve_to names) or dismiss it with a reason (move it to
Done/ with `<name>.why.md` beside it saying why, who and when). Each is a ledger line.

The keeper decides through here when one runs (its ledger stays the one in memory, and
it publishes the event); the CLI without a keeper decides here itself. Names are taken
as the file system has them (a str with lone surrogates for bytes that are not UTF-8)
and shown to people through names.shown().
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from watchkeeper.core.history import iso, utc_now
from watchkeeper.core.ledger import Ledger, file_digest, unique_destination
from watchkeeper.core.names import shown
from watchkeeper.core.titles import is_item

WAITING = "Needs_Action"
DISMISS_TO = "Done"
MAX_REASON = 4000  # characters: a reason is a sentence or a paragraph, not a document
Outcome = Literal["approved", "dismissed"]


class NotAnItem(ValueError):
    """The path is not an item in Needs_Action/ of this vault (usage error: exit 2)."""


class DecisionJson(TypedDict):
    """The `item_decided` event's data and the control socket's answer."""

    path: str  # where it waited, vault-relative
    outcome: str
    to: str  # where it is now, vault-relative
    by: str
    at: str
    reason: str | None
    note: str | None  # the dismissal's .why.md, vault-relative


@dataclass(frozen=True)
class Decision:
    path: str
    outcome: Outcome
    to: str
    by: str
    at: str
    reason: str | None = None
    note: str | None = None

    def to_json(self) -> DecisionJson:
        return {
            "path": self.path,
            "outcome": self.outcome,
            "to": self.to,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        outcome: Outcome = "approved" if data.get("outcome") == "approved" else "dismissed"
        return cls(
            str(data["path"]),
            outcome,
            str(data["to"]),
            str(data["by"]),
            str(data["at"]),
            data.get("reason"),
            data.get("note"),
        )

    def said(self) -> str:
        """One line for the keeper log and the CLI."""
        why = f" ({one_line(self.reason)})" if self.reason else ""
        said = f"{one_line(self.path)} -> {one_line(self.to)}"
        return f"{self.outcome} {said} by {one_line(self.by)}{why}"


def one_line(text: str) -> str:
    """`text` for a line of a log or a note: quoted as JSON when it holds a line break
    or another character that is not printable (a file name may)."""
    text = shown(text)
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)


def operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def item_of(vault: Path, given: str | Path, cwd: Path | None = None) -> str:
    """The vault-relative path (Needs_Action/NAME) of the item `given` names: a path
    absolute, relative to `cwd`, or relative to the vault. NotAnItem otherwise, naming
    the path and why. The item itself is not resolved: a symlink is moved as a link."""
    root = vault.resolve()
    raw = Path(given)
    candidates = [raw] if raw.is_absolute() else [(cwd or Path.cwd()) / raw, root / raw]
    absolute = next((path for path in candidates if os.path.lexists(path)), candidates[0])
    absolute = Path(os.path.normpath(absolute))
    try:
        folder = absolute.parent.resolve()
    except OSError:
        folder = absolute.parent
    try:
        where = folder.relative_to(root)
    except ValueError:
        raise NotAnItem(f"{shown(str(given))} is outside the vault {shown(str(root))}") from None
    name = absolute.name
    if where.as_posix() != WAITING:
        raise NotAnItem(
            f"{shown(str(given))} is not in {WAITING}/ of the vault {shown(str(root))}:"
            " only items waiting there are approved or dismissed"
        )
    rel = f"{WAITING}/{name}"
    check_item(root, rel)
    return rel


def check_item(vault: Path, rel: str) -> None:
    """NotAnItem unless `rel` is a file waiting directly in Needs_Action/."""
    folder, _, name = rel.partition("/")
    if folder != WAITING or not name or "/" in name or name in (".", ".."):
        raise NotAnItem(f"{shown(rel)} is not an item in {WAITING}/")
    if not is_item(name):
        raise NotAnItem(f"{shown(rel)} is a note about an item, not an item")
    path = vault / rel
    if not os.path.lexists(path):
        raise NotAnItem(f"no item {shown(rel)} in the vault {shown(str(vault))}")
    if path.is_symlink() and not _inside(vault, path):
        raise NotAnItem(f"{shown(rel)} points outside the vault")
    if not path.is_file():
        raise NotAnItem(f"{shown(rel)} is not a file")


def _inside(vault: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(vault.resolve())
    except (ValueError, OSError):
        return False
    return True


def find_shown(vault: Path, rel: str) -> str:
    """The item a console row names: its rows show a name that is not UTF-8 with U+FFFD
    for each such byte, so the real name is the one entry of the folder shown so."""
    if os.path.lexists(vault / rel):
        return rel
    folder, _, name = rel.rpartition("/")
    try:
        matches = [entry.name for entry in os.scandir(vault / folder) if shown(entry.name) == name]
    except OSError:
        matches = []
    return f"{folder}/{matches[0]}" if len(matches) == 1 else rel


def decide(
    vault: Path,
    approve_to: str,
    ledger: Ledger,
    rel: str,
    outcome: str,
    reason: str | None = None,
    by: str | None = None,
) -> Decision:
    """Approve or dismiss the item at vault-relative `rel`. NotAnItem for a bad path or
    reason; OSError when the move fails (nothing is recorded then)."""
    if outcome not in ("approved", "dismissed"):
        raise NotAnItem(f"a decision is approved or dismissed, not {outcome!r}")
    check_item(vault, rel)
    reason = (reason or "").strip() or None
    if outcome == "dismissed" and reason is None:
        raise NotAnItem("a dismissal needs a reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise NotAnItem(f"the reason is longer than {MAX_REASON} characters")
    source = vault / rel
    digest = file_digest(source)
    folder = vault / (approve_to if outcome == "approved" else DISMISS_TO)
    folder.mkdir(parents=True, exist_ok=True)
    target = unique_destination(folder, source.name)
    to = target.relative_to(vault).as_posix()
    by, at = by or operator(), iso(utc_now())
    old_note = source.with_name(source.name + ".why.md")
    note: Path | None = None
    if outcome == "dismissed":
        note = target.with_name(target.name + ".why.md")
        note.write_text(_why(rel, to, reason or "", by, at, old_note), encoding="utf-8")
    try:
        os.replace(source, target)
    except OSError:
        if note is not None:
            note.unlink(missing_ok=True)
        raise
    if os.path.lexists(old_note):
        # A quarantine note goes along with an approved item; a dismissal's holds it.
        if note is None:
            os.replace(old_note, target.with_name(target.name + ".why.md"))
        else:
            old_note.unlink(missing_ok=True)
    ledger.record("", rel, digest, outcome, note=to, by=by, reason=reason)
    return Decision(
        rel,
        "approved" if outcome == "approved" else "dismissed",
        to,
        by,
        at,
        reason,
        note.relative_to(vault).as_posix() if note is not None else None,
    )


def _why(rel: str, to: str, reason: str, by: str, at: str, old_note: Path) -> str:
    lines = [
        f"# Dismissed: {one_line(rel.rsplit('/', 1)[-1])}",
        "",
        "- Reason: " + shown(reason).replace("\n", "\n  "),
        f"- By: {one_line(by)}",
        f"- At: {at}",
        f"- Came from: `{one_line(rel)}`, now `{one_line(to)}`",
        "",
    ]
    try:
        earlier = old_note.read_text(encoding="utf-8", errors="replace")
    except OSError:
        earlier = ""
    if earlier:
        lines += ["## The note it had before", "", earlier.rstrip(), ""]
    return "\n".join(lines)
