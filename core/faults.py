"""Failures told in the keeper's log: one line each, whatever bytes a file name brought in."""

from __future__ import annotations

from watchkeeper.core.names import shown


def described(error: BaseException) -> str:
    return shown(f"{type(error).__name__}: {error}")
