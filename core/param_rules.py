"""What a job's declared parameters (`params = { day = "today" }`) and a run's given values
may be. Plain rules with no imports of the config, so the config's converters can use them
and the run-time side (core/params.py) can too."""

from __future__ import annotations

import re

from watchkeeper.core.units import brief

# A name becomes WATCHKEEPER_PARAM_<NAME>: the characters a shell variable takes.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PARAMS = 32
MAX_NAME = 64
# Every value is written into each history line of a run: kept to a line's worth.
MAX_VALUE = 1000

Problem = tuple[tuple[str, ...], str]


def env_name(name: str) -> str:
    return f"WATCHKEEPER_PARAM_{name.upper()}"


def name_problem(name: str) -> str:
    if not NAME.fullmatch(name):
        return (
            f"{name!r} is not a parameter name: use letters, digits and '_', "
            "not starting with a digit"
        )
    if len(name) > MAX_NAME:
        return f"a parameter name of {len(name):,} characters; at most {MAX_NAME}"
    return ""


def value_problem(value: object) -> str:
    if not isinstance(value, str):
        return f"expected a string, got {'a table' if isinstance(value, dict) else brief(value)}"
    if len(value) > MAX_VALUE:
        return f"a value of {len(value):,} characters; at most {MAX_VALUE:,}"
    if "\0" in value:
        return "contains a NUL byte, which no environment variable can hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not UTF-8 text"
    return ""


def declaration_problems(value: object) -> list[Problem]:
    """Each problem of a `params` table, at the key it concerns (() for the whole table)."""
    if not isinstance(value, dict):
        return [((), f'expected a table like {{ day = "today" }}, got {brief(value)}')]
    if len(value) > MAX_PARAMS:
        return [((), f"{len(value)} parameters; at most {MAX_PARAMS}")]
    problems: list[Problem] = []
    by_env: dict[str, str] = {}
    for name, default in value.items():
        problem = name_problem(name) or value_problem(default)
        if not problem and (twin := by_env.get(name.upper())) is not None:
            problem = f"{name!r} and {twin!r} would both be {env_name(name)}"
        if problem:
            problems.append(((name,), problem))
        by_env.setdefault(name.upper(), name)
    return problems
