"""One config table's keys, each through its converter: the values that passed and every
problem at its key path (unknown key with a did-you-mean, an unusable string, a refused
value). Shared by the checker of jobs and the keeper (core/config.py) and the parsers of
[cluster], [vault] and [notify.NAME], so each table is checked the same way."""

from __future__ import annotations

from typing import Any

from watchkeeper.core.config_values import Convert, KeyPath, Problems, hint, text_problem


def convert_table(
    table: dict[str, object], spec: dict[str, Convert]
) -> tuple[dict[str, Any], list[tuple[KeyPath, str]]]:
    """Each key's converted value (typed per `spec`, so Any to the dataclasses), and the
    problems, keyed by their path inside `table`."""
    converted: dict[str, Any] = {}
    problems: list[tuple[KeyPath, str]] = []
    for key, value in table.items():
        convert = spec.get(key)
        if convert is None:
            problems.append(((key,), f"unknown key {key!r}{hint(key, spec)}"))
            continue
        bad_text = text_problem(value)
        if bad_text is not None:
            inner, message = bad_text
            problems.append(((key, *inner), message))
            continue
        try:
            converted[key] = convert(value)
        except Problems as exc:
            problems.extend(((key, *inner), message) for inner, message in exc.problems)
        except ValueError as exc:
            problems.append(((key,), str(exc)))
    return converted, problems


class Shared:
    """Equal values held once: tomllib gives each job its own copy of a command, a cron,
    an interval, and 10,000 jobs that run the same command kept 10,000 of them."""

    def __init__(self) -> None:
        self.seen: dict[object, object] = {}

    def values(self, fields: dict[str, Any]) -> dict[str, Any]:
        for key, value in fields.items():
            if (
                isinstance(value, str)
                or (isinstance(value, float) and value)  # 0.0 and -0.0 are equal
                or (isinstance(value, tuple) and all(isinstance(item, str) for item in value))
            ):
                # Keyed by type as well: 1, 1.0 and True are equal.
                fields[key] = self.seen.setdefault((type(value), value), value)
        return fields
