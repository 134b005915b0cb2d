"""Hostile watchkeeper.toml content, shared by the config tests and the chaos bench.

`hostile_values()` is a hypothesis strategy for any one key's value: numbers (inf, nan,
huge, negative, below a clock tick), strings (NUL bytes, 200 KB, duration- and size-like,
paths out of the vault) and nested lists and tables. `hostile_documents()` needs no
hypothesis: a seeded stream of whole files, with what no single value reaches (nesting
thousands deep, integers of 5,000 digits, `after` chains of 3,000 jobs). `BOUNDS` is the
range README documents for each numeric key, which an accepted config must hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import tomli_w
from hypothesis import strategies as st

from watchkeeper.core.config_values import JOB_FIELDS, KEEPER_FIELDS

DAY = 86400.0
# (section, key) -> (lowest, highest) as README's "Configuration" states them; durations in
# seconds, sizes in bytes.
BOUNDS: dict[tuple[str, str], tuple[float, float]] = {
    ("keeper", "max_runs_per_hour"): (0, 1_000_000),
    ("keeper", "max_parallel"): (1, 10_000),
    ("keeper", "log_max_size"): (4 * 1024, 1024**4),
    ("keeper", "log_backups"): (0, 1000),
    ("keeper", "history_retention_days"): (1, 36_500),
    ("keeper", "kill_grace"): (0, 3600),
    ("keeper", "shutdown_grace"): (0, DAY),
    ("jobs", "every"): (0.05, 366 * DAY),
    ("jobs", "timeout"): (0.01, 366 * DAY),
    ("jobs", "retries"): (0, 100),
    ("jobs", "retry_delay"): (0, 366 * DAY),
    ("jobs", "max_retry_delay"): (0, 366 * DAY),
    ("jobs", "max_per_hour"): (0, 1_000_000),
    ("jobs", "settle"): (0, DAY),
    ("jobs", "quarantine_after"): (1, 1000),
    ("jobs", "memory_max"): (4 * 1024**2, 1024**4),
    ("jobs", "tasks_max"): (1, 1_000_000),
    ("jobs", "cpu_weight"): (1, 10_000),
    ("jobs", "nice"): (-20, 19),
    ("jobs", "io_weight"): (1, 10_000),
}

KEYS: list[tuple[str, str]] = [("keeper", key) for key in KEEPER_FIELDS] + [
    ("jobs", key) for key in JOB_FIELDS
]

# Values seen to break a keeper (issue 14) and their neighbours at the documented edges.
SAMPLES: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    1e-300,
    1e300,
    -1,
    0,
    0.0,
    1,
    10**12,
    2**63,
    10**400,
    36_501,
    "inf",
    "nan",
    "-5s",
    "0s",
    "49ms",
    "50ms",
    "99999999999999999999w",
    "1" + "0" * 400 + "B",
    "1" + "0" * 400 + "s",
    "4095",
    "1025GB",
    "5MB",
    "a\0b",
    "\0",
    "x" * 200_000,
    "",
    " ",
    "../../etc/shadow",
    "/etc",
    "Inbox/../../x",
    "0777",
    "0750",
    "0o750",
    "0600",
    "* * * * *",
    "@daily",
    "61 * * * *",
    "Europe/Berlin",
    "skip",
    ["a\0b"],
    ["true", "x" * 200_000],
    [],
    [[[]]],
    {"A": "a\0b"},
    {"A\0B": "x"},
    {"A": {"B": {"C": 1}}},
    True,
]

_LEAF = (
    st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.booleans()
    | st.text(max_size=20)
    | st.from_regex(r"\A[0-9]{1,25}(\.[0-9]{1,5})?(ms|s|m|h|d|w|B|KB|MB|GB|TB)?\Z")
    | st.sampled_from(SAMPLES)
    | st.datetimes()
)


def hostile_values() -> st.SearchStrategy[Any]:
    """Any value TOML can hold, biased to the ones that break parsers and timers."""
    return st.recursive(
        _LEAF,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def document(section: str, key: str, value: Any) -> str:
    """A config with `key = value` in [keeper], or in a job that has a command."""
    if section == "keeper":
        data: dict[str, Any] = {"keeper": {key: value}}
    else:
        job: dict[str, Any] = {"command": "true"} if key != "command" else {}
        data = {"jobs": {"a": {**job, key: value}}}
    return tomli_w.dumps(data)


def _chain(jobs: int, cycle: bool) -> str:
    """Job i runs after job i + 1: checking it walks the whole chain from the first job."""
    parts = []
    for index in range(jobs):
        after = index + 1 if index + 1 < jobs else (0 if cycle else None)
        parts.append(f'[jobs.j{index}]\ncommand = "true"\n')
        if after is not None:
            parts.append(f'after = ["j{after}"]\n')
    return "".join(parts)


def structural_documents() -> list[tuple[str, str]]:
    """(name, text): whole files that no single value strategy produces."""
    head = '[jobs.a]\ncommand = "true"\n'
    return [
        ("array nested 5,000 deep", f"{head}description = {'[' * 5000}{']' * 5000}\n"),
        ("array nested 400 deep", f"[jobs.a]\ncommand = {'[' * 400}{']' * 400}\n"),
        ("table nested 5,000 deep", f"{head}env = {'{a=' * 5000}1{'}' * 5000}\n"),
        ("integer of 5,000 digits", f"[keeper]\nlog_backups = {'1' * 5000}\n"),
        ("size of 400 zeros", f'[keeper]\nlog_max_size = "1{"0" * 400}B"\n'),
        ("after chain of 3,000 jobs", _chain(3000, cycle=False)),
        ("after cycle of 3,000 jobs", _chain(3000, cycle=True)),
        ("NUL in an argv element", '[jobs.a]\ncommand = ["echo", "a\\u0000b"]\n'),
        ("env_file out of the vault", f'{head}env_file = "../../etc/shadow"\n'),
    ]


def hostile_documents(seed: int, count: int) -> Iterator[tuple[str, str]]:
    """The structural files, then `count` files each setting one key to a sample value (or
    to a few, mixed), drawn from `seed`: for a harness without hypothesis."""
    yield from structural_documents()
    rng = random.Random(seed)
    for _ in range(count):
        section, key = rng.choice(KEYS)
        value = rng.choice(SAMPLES)
        if rng.random() < 0.3:
            value = [value, rng.choice(SAMPLES)] if rng.random() < 0.5 else {"k": value}
        yield f"{section}.{key} = {value!r:.40}", document(section, key, value)
