"""Did-you-mean hints for a name or word an operator mistyped (jobs, statuses, keys)."""

from __future__ import annotations

from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to `word`, when one is near enough to be a likely typo."""
    import difflib  # only a mistake needs it: ~1 ms off every command's start

    matches = difflib.get_close_matches(word, list(choices), n=1)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' to append to an error, or '' when nothing is close."""
    match = closest(word, choices)
    return f" (did you mean {match!r}?)" if match is not None else ""
