"""The vault's folders: layout, and what each folder holds right now."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.core import logsdir
from watchkeeper.core.names import shown

FOLDERS = ("Inbox", "Needs_Action", "Plans", "Done")


@dataclass(frozen=True)
class FolderSummary:
    name: str
    count: int
    newest: tuple[str, ...]  # for display: a byte that is not UTF-8 shown as U+FFFD


def ensure_layout(vault: Path) -> None:
    for folder in FOLDERS:
        (vault / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("Logs/jobs", "Logs/history"):
        logsdir.make_folder(vault / folder)  # private to this user, whatever the umask


def inside_vault(vault: Path, path: Path) -> bool:
    """False for a symlink (or path) that resolves outside the vault: those are never followed."""
    try:
        path.resolve().relative_to(vault.resolve())
    except (ValueError, OSError):
        return False
    return True


def leaves_vault(vault: Path, rel: str) -> bool:
    """True when the file at vault-relative `rel`, or a folder on its way there, is a
    symlink that resolves outside the vault. One lstat a path component."""
    path = vault
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink() and not inside_vault(vault, path):
            return True
    return False


def summarize(vault: Path, folder: str, newest: int = 5) -> FolderSummary:
    entries: list[tuple[float, str]] = []
    try:
        with os.scandir(vault / folder) as scan:
            for entry in scan:
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink() and not inside_vault(vault, Path(entry.path)):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    entries.append((entry.stat().st_mtime, entry.name))
                except OSError:
                    continue
    except FileNotFoundError:
        return FolderSummary(folder, 0, ())
    entries.sort(reverse=True)
    return FolderSummary(folder, len(entries), tuple(shown(name) for _, name in entries[:newest]))


def summarize_all(vault: Path, newest: int = 5) -> list[FolderSummary]:
    return [summarize(vault, folder, newest) for folder in FOLDERS]
