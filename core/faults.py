"""Failures told in the keeper's log: one line each, whatever bytes a file name brought in."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` as UTF-8 can hold it: a name read from disk may carry undecodable bytes
    (as surrogates), which no log, JSON line or Markdown file could write."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def described(error: BaseException) -> str:
    return printable(f"{type(error).__name__}: {error}")
