"""Each config key's converter: the typed value, or ValueError with the message shown to the
operator. Every number has bounds (README, "Configuration"), so no value that passes can
overflow, spin or hang the keeper later."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from watchkeeper.core.cron import CronSchedule
from watchkeeper.core.limits import cpu_weight, io_weight, memory_max, nice, tasks_max
from watchkeeper.core.param_rules import declaration_problems
from watchkeeper.core.units import brief, parse_duration, parse_size

if TYPE_CHECKING:
    from watchkeeper.core.config_http import BreakerConfig, HttpCall

KeyPath = tuple[str, ...]
Convert = Callable[[object], object]

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Beyond a year an interval or a wait is a mistake, and far below what timers overflow at.
LONGEST = 366 * DAY
# Below this an `every` job would fire faster than a process can start; 1e-300 spun the
# keeper at 100% CPU. The tests and benchmarks run jobs every 50 ms.
MIN_INTERVAL = 0.05
MIN_TIMEOUT = 0.01
KIB, TIB = 1024, 1024**4
# Linux refuses a single argument or environment string of 128 KiB or more (MAX_ARG_STRLEN).
MAX_STRING_BYTES = 128 * KIB - 1
DEFAULT_LOG_MODE = 0o700


class NoEntries(dict[str, str]):
    """The env or params table of every job that sets none: one shared rather than one
    each (10,000 jobs held 1.3 MB of empty dicts), so it refuses to be filled."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a job's settings are read-only")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


_NO_ENTRIES = NoEntries()


def no_entries() -> dict[str, str]:
    return _NO_ENTRIES


class Problems(Exception):
    """Several problems inside one value (an env table), each at its own key."""

    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        self.problems = problems
        super().__init__(problems)


def show(value: object) -> str:
    """A value as the operator wrote it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return brief(value)


def hint(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    import difflib  # only for a mistake: a valid config loads without it

    matches = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def text_problem(value: object) -> tuple[KeyPath, str] | None:
    """A string anywhere in `value` (a table's keys too) that no command, path or variable can
    hold: one with a NUL byte, or longer than the kernel passes to a process. Walked with a
    stack of its own, as TOML nests a few hundred levels deep."""
    pending: list[tuple[KeyPath, object]] = [((), value)]
    while pending:
        inner, item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                problem = _unusable(key)
                if problem:
                    return (*inner, key), problem
                pending.append(((*inner, key), child))
        elif isinstance(item, list):
            pending.extend((inner, child) for child in item)
        elif isinstance(item, str) and (problem := _unusable(item)):
            return inner, problem
    return None


def _unusable(text: str) -> str:
    if "\0" in text:
        return "contains a NUL byte, which no command, path or variable can hold"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_STRING_BYTES:
        return f"a string of {size:,} bytes; at most {MAX_STRING_BYTES:,}"
    return ""


def _integer(low: int, high: int) -> Convert:
    def convert(value: object) -> int:
        # bool is an int subclass; `retries = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer from {low:,} to {high:,}, got {show(value)}")
        return value

    return convert


def span(seconds: float) -> str:
    """A bound as the operator would write it: 50ms, 0s, 1h, 366d."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds else "0s"


def duration_between(low: float, high: float) -> Convert:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(
                f"expected a duration from {span(low)} to {span(high)}, got {show(value)}"
            )
        return seconds

    return convert


def _size(low: int, high: int) -> Convert:
    def convert(value: object) -> int:
        size = parse_size(value)
        if not low <= size <= high:
            raise ValueError(
                f"expected a size from {low // KIB}KB to {high // TIB}TB like '5MB', "
                f"got {show(value)}"
            )
        return size

    return convert


_OCTAL_MODE = re.compile(r"0?[0-7]{3}")


def _log_mode(value: object) -> int:
    if not isinstance(value, str) or not _OCTAL_MODE.fullmatch(value.strip()):
        raise ValueError(
            f'expected an octal mode in quotes like "0700" or "0750", got {show(value)}'
        )
    mode = int(value, 8)
    if mode & 0o007:
        raise ValueError(
            f"{value!r} lets every local user read job output and history; "
            'give access to a group instead, e.g. "0750"'
        )
    if mode & 0o700 != 0o700:
        raise ValueError(f"{value!r} must keep rwx for the keeper's own user (7 first, e.g. 0750)")
    return mode


def _choice(*choices: str) -> Convert:
    def convert(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"expected one of {listed}, got {show(value)}{hint(value, choices)}")

    return convert


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {show(value)}")
    return value


def _non_empty(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {show(value)}")
    return value


def _inside_vault(value: object) -> str:
    """A relative path that cannot leave the vault by its words; where its symlinks lead is
    checked against the vault itself (config.Checker)."""
    text = _non_empty(value)
    path = PurePosixPath(text)
    if path.is_absolute():
        raise ValueError(f"expected a path relative to the vault, got {show(value)}")
    if ".." in path.parts:
        raise ValueError(f"{text!r} must stay inside the vault: no '..'")
    return text


def _command(value: object) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(arg, str) for arg in value)
        and value[0].strip()
    ):
        return tuple(value)
    raise ValueError(f"expected a command string or a non-empty list of strings, got {show(value)}")


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise ValueError(f"expected a list of non-empty strings, got {show(value)}")
    return tuple(value)


def _channel_names(value: object) -> tuple[str, ...]:
    """[notify.NAME] channels; may be empty: `notify = []` turns the keeper's default off."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f'expected a list of channel names like ["ops"], got {show(value)}')
    for name in value:
        if not LABEL.fullmatch(name):
            raise ValueError(f"bad channel name {show(name)}: a NAME of a [notify.NAME] table")
    return tuple(dict.fromkeys(value))


def _globs(value: object) -> tuple[str, ...]:
    globs = _strings(value)
    for glob in globs:
        if PurePosixPath(glob).is_absolute():
            raise ValueError(f"glob {glob!r} must be relative to the vault, not absolute")
        if ".." in glob.split("/"):
            raise ValueError(f"glob {glob!r} must stay inside the vault: no '..'")
    return globs


# Five or six fields fit in far less; error messages quote the expression whole.
MAX_CRON_LENGTH = 1000


def _cron(value: object) -> str:
    expr = _non_empty(value)
    if len(expr) > MAX_CRON_LENGTH:
        raise ValueError(f"a cron expression of {len(expr):,} characters; at most 1,000")
    CronSchedule.parse(expr)
    return expr


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table like {{ NAME = "value" }}, got {show(value)}')
    problems: list[tuple[KeyPath, str]] = []
    for name, text in value.items():
        if not name or "=" in name:
            problems.append(((name,), f"{name!r} is not a usable environment variable name"))
        elif not isinstance(text, str):
            problems.append(((name,), f"expected a string, got {show(text)}"))
    if problems:
        raise Problems(problems)
    return dict(value)


def _params(value: object) -> dict[str, str]:
    problems = declaration_problems(value)
    if problems:
        raise Problems(list(problems))
    assert isinstance(value, dict)
    return dict(value)


def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _timezone(value: object) -> ZoneInfo:
    name = _non_empty(value)
    found = zone(name)
    if found is None:
        # available_timezones() scans the tz database: only worth it to word an error.
        close = hint(name, sorted(available_timezones()))
        raise ValueError(f"unknown IANA time zone {name!r}{close}")
    return found


def _zone_name(value: object) -> str:
    """A job's zone, kept by name: a JobConfig is compared, copied and shown as JSON."""
    return _timezone(value).key


def _git_ref(value: object) -> str:
    """A branch, tag or commit to start worktrees from; git itself says whether it exists
    (at the run). A leading '-' would read as an option."""
    ref = _non_empty(value).strip()
    if ref.startswith("-") or any(char.isspace() or not char.isprintable() for char in ref):
        raise ValueError(f"expected a git branch, tag or commit, got {show(value)}")
    return ref


# A label names a queue (procrastinate's queue names are plain text, but they show in
# `cluster status` and in unit files): the characters of a job's name.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Subsets of a worker's labels become queues it listens on: eight labels are 256 queues.
MAX_LABELS = 8


# Where a run goes when the job does not say: the leader's own host, as without a cluster.
ON_KEEPER = ("keeper",)


# core/config_http.py parses an http job's tables: a config without one never loads it
# (its dataclasses and regexes were ~1.5 ms of every command's start).
def _http_call(value: object) -> HttpCall:
    from watchkeeper.core.config_http import http_call

    return http_call(value)


def _breaker(value: object) -> BreakerConfig:
    from watchkeeper.core.config_http import breaker

    return breaker(value)


def kind_problem(
    body: Mapping[str, object], fields: Mapping[str, object]
) -> tuple[str, str] | None:
    """(key, message) when a job does not have exactly one of `command` and `http`, or
    an http job asks for what only a command has (a worker, a breaker without http)."""
    if "command" in body and "http" in body:
        return "http", "a job has either 'command' or 'http', not both"
    if "command" not in body and "http" not in body:
        return "command", "missing required key 'command'"
    if "breaker" in body and "http" not in body:
        return "breaker", "a breaker guards an 'http' job; this job runs a command"
    runs_on = fields.get("runs_on")
    if "http" in body and runs_on is not None and runs_on != ON_KEEPER:
        return "runs_on", "an http job runs in the keeper: leave runs_on out"
    return None


def runs_on(value: object) -> tuple[str, ...]:
    """"keeper", "any", or the labels a worker must all have (sorted, no repeats)."""
    if value in ("keeper", "any"):
        return (str(value),)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f'expected "keeper", "any" or a list of labels, got {show(value)}')
    bad = [label for label in value if not isinstance(label, str) or not LABEL.fullmatch(label)]
    if bad:
        raise ValueError(f"bad label {show(bad[0])}: use letters, digits, '_', '.' and '-'")
    labels = tuple(sorted(set(value)))
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    if set(labels) & {"keeper", "any"}:
        raise ValueError('"keeper" and "any" stand alone, not in a list of labels')
    return labels



KEEPER_FIELDS: dict[str, Convert] = {
    "timezone": _timezone,
    "max_runs_per_hour": _integer(0, 1_000_000),
    "max_parallel": _integer(1, 10_000),
    "log_max_size": _size(4 * KIB, TIB),
    "log_backups": _integer(0, 1000),
    "log_mode": _log_mode,
    "history_retention_days": _integer(1, 36_500),
    "log_retention_days": _integer(1, 36_500),
    "notify": _channel_names,
    "catch_up": _choice("once", "none"),
    "kill_grace": duration_between(0, HOUR),
    "shutdown_grace": duration_between(0, DAY),
}

JOB_FIELDS: dict[str, Convert] = {
    "command": _command,
    "cron": _cron,
    "every": duration_between(MIN_INTERVAL, LONGEST),
    "on_files": _globs,
    "after": _strings,
    "enabled": _boolean,
    "timeout": duration_between(MIN_TIMEOUT, LONGEST),
    "retries": _integer(0, 100),
    "retry_delay": duration_between(0, LONGEST),
    "max_retry_delay": duration_between(0, LONGEST),
    "max_per_hour": _integer(0, 1_000_000),
    "overlap": _choice("skip", "queue", "allow"),
    "settle": duration_between(0, DAY),
    "quarantine_after": _integer(1, 1000),
    "unique_by": _choice("title"),
    "secret_env": _strings,
    "env": _env,
    "env_file": _inside_vault,
    "cwd": _inside_vault,
    "on_success": _command,
    "on_failure": _command,
    "description": _string,
    "runs_on": runs_on,
    "http": _http_call,
    "breaker": _breaker,
    "isolate": _choice("worktree"),
    "repo": _non_empty,
    "base": _git_ref,
    "keep_failed": _boolean,
    "merge": _choice("ff"),
    "jitter": duration_between(0, DAY),
    "timezone": _zone_name,
    "memory_max": memory_max,
    "tasks_max": tasks_max,
    "cpu_weight": cpu_weight,
    "nice": nice,
    "io_weight": io_weight,
    "params": _params,
    "notify": _channel_names,
}

# Keys whose path the checker follows through symlinks, which must end inside the vault.
VAULT_PATHS = ("env_file", "cwd")
