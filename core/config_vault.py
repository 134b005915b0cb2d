"""The `[vault]` table: where the operator's decisions on Needs_Action/ items go. Parsed
here so config.py stays the checker of the jobs and the keeper."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from watchkeeper.core.config_table import convert_table
from watchkeeper.core.config_values import Convert, Problems, show

APPROVE_TO = "Plans"
# Folders an approved item must not land in: where it waits, where dismissed ones go,
# and the keeper's own.
_NOT_APPROVE_TO = ("Needs_Action", "Done", "Logs")


@dataclass(frozen=True)
class VaultSettings:
    # Vault-relative folder, "/"-separated, never leaving the vault by its words.
    approve_to: str = APPROVE_TO


def _approve_to(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'expected a folder of the vault like "Plans", got {show(value)}')
    folder = posixpath.normpath(value.strip().strip("/") if not value.startswith("/") else value)
    if value.startswith("/") or folder == ".." or folder.startswith("../"):
        raise ValueError(f"{value!r} leads outside the vault: name a folder inside it")
    if folder == "." or folder.split("/")[0] in _NOT_APPROVE_TO:
        raise ValueError(
            f"{value!r} cannot take approved items: name another folder than "
            + ", ".join(f"{name}/" for name in _NOT_APPROVE_TO)
        )
    return folder


VAULT_FIELDS: dict[str, Convert] = {"approve_to": _approve_to}


def parse_vault(table: dict[str, object]) -> VaultSettings:
    """The [vault] table; Problems lists every bad key, keyed by its path."""
    fields, problems = convert_table(table, VAULT_FIELDS)
    if problems:
        raise Problems(problems)
    return VaultSettings(**fields)
