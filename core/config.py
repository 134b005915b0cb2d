"""watchkeeper.toml: read with tomllib, every key validated, every error located."""

from __future__ import annotations

import bisect
import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from core.cron import CronSchedule
from core.units import parse_duration, parse_size

CONFIG_NAME = "watchkeeper.toml"

Command = tuple[str, ...] | str
"""An argv list (no shell) or a string run under /bin/sh -c."""


@dataclass(frozen=True)
class JobConfig:
    name: str
    command: Command
    cron: str | None = None
    every: float | None = None
    on_files: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    enabled: bool = True
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 30.0
    max_retry_delay: float = 600.0
    max_per_hour: int = 0
    overlap: str = "skip"
    settle: float = 1.0
    quarantine_after: int = 3
    secret_env: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    env_file: str | None = None
    cwd: str | None = None
    on_success: Command | None = None
    on_failure: Command | None = None
    description: str = ""
    line: int = 0

    @property
    def scheduled(self) -> bool:
        return self.cron is not None or self.every is not None

    @property
    def trigger_summary(self) -> str:
        parts = []
        if self.cron is not None:
            parts.append(f"cron {self.cron}")
        if self.every is not None:
            from core.units import format_duration

            parts.append(f"every {format_duration(self.every)}")
        if self.on_files:
            parts.append("files " + ",".join(self.on_files))
        if self.after:
            parts.append("after " + ",".join(self.after))
        return "; ".join(parts) or "manual"


@dataclass(frozen=True)
class KeeperConfig:
    timezone: str
    tz: ZoneInfo
    max_runs_per_hour: int = 0
    max_parallel: int = 4
    log_max_size: int = 5 * 1024 * 1024
    log_backups: int = 3
    history_retention_days: int = 30
    catch_up: str = "once"
    kill_grace: float = 5.0
    shutdown_grace: float = 30.0


@dataclass(frozen=True)
class Config:
    path: Path
    keeper: KeeperConfig
    jobs: dict[str, JobConfig]

    @property
    def vault(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class ConfigIssue:
    path: Path
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one config file, each with its file, line and key."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


KeyPath = tuple[str, ...]


def load_config(path: Path) -> Config:
    """Read and validate the config file at `path`; any problem raises ConfigError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue(path, 0, "<file>", f"cannot read: {reason}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        issue = ConfigIssue(path, line, "<file>", f"not UTF-8 text: {exc.reason}")
        raise ConfigError([issue]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate every key of a TOML document; ConfigError lists all problems, sorted by line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(exc, text, path)]) from None
    checker = _Checker(path, _KeyLines(text).scan())
    config = checker.config(data)
    if checker.issues or config is None:
        raise ConfigError(sorted(checker.issues, key=lambda issue: issue.line))
    return config


def default_timezone() -> tuple[str, ZoneInfo]:
    """The machine's zone: $TZ, else what /etc/localtime links to, else its contents, else UTC."""
    name = _iana_name(os.environ.get("TZ", "").removeprefix(":"))
    zone = _zone(name) if name else None
    if zone is not None:
        return name, zone
    return _localtime_zone(Path("/etc/localtime"))


def _localtime_zone(link: Path) -> tuple[str, ZoneInfo]:
    try:
        target = os.readlink(link)
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        name = _iana_name(target)
        zone = _zone(name)
        if zone is not None:
            return name, zone
    try:
        with link.open("rb") as fh:
            return "localtime", ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return "UTC", ZoneInfo("UTC")


def _iana_name(text: str) -> str:
    """Turns "/usr/share/zoneinfo/Europe/Berlin" into "Europe/Berlin"; other text unchanged."""
    return text.rsplit("zoneinfo/", 1)[-1]


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


_TOML_LOCATION = re.compile(r"\(at line (\d+), column (\d+)\)$")
_TOML_AT_END = "(at end of document)"


def _syntax_issue(exc: tomllib.TOMLDecodeError, text: str, path: Path) -> ConfigIssue:
    message = str(exc)
    located = _TOML_LOCATION.search(message)
    if located:
        line = int(located.group(1))
        message = f"{message[: located.start()]}(column {located.group(2)})"
    elif message.endswith(_TOML_AT_END):
        line = text.count("\n") + 1
        message = message.removesuffix(_TOML_AT_END) + "(at end of file)"
    else:
        line = 0
    return ConfigIssue(path, line, "<toml>", f"TOML syntax error: {message}")


# Value converters: each returns the typed value or raises ValueError with the message shown
# to the operator. Several problems inside one value (an env table) raise _Problems instead.

Convert = Callable[[object], object]


class _Problems(Exception):
    def __init__(self, problems: list[tuple[KeyPath, str]]) -> None:
        self.problems = problems
        super().__init__(problems)


def _show(value: object) -> str:
    """A value as the operator wrote it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _integer(minimum: int) -> Convert:
    def convert(value: object) -> int:
        # bool is an int subclass; `retries = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {_show(value)}")
        return value

    return convert


def _duration(*, positive: bool) -> Convert:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError(f"expected a duration > 0, got {_show(value)}")
        return seconds

    return convert


def _log_size(value: object) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"expected a size > 0 like '5MB', got {_show(value)}")
    return size


def _choice(*choices: str) -> Convert:
    def convert(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"expected one of {listed}, got {_show(value)}{_hint(value, choices)}")

    return convert


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_show(value)}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    return value


def _non_empty(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return value


def _vault_relative(value: object) -> str:
    text = _non_empty(value)
    if PurePosixPath(text).is_absolute():
        raise ValueError(f"expected a path relative to the vault, got {_show(value)}")
    return text


def _command(value: object) -> Command:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(arg, str) for arg in value)
        and value[0].strip()
    ):
        return tuple(value)
    raise ValueError(
        f"expected a command string or a non-empty list of strings, got {_show(value)}"
    )


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise ValueError(f"expected a list of non-empty strings, got {_show(value)}")
    return tuple(value)


def _globs(value: object) -> tuple[str, ...]:
    globs = _strings(value)
    for glob in globs:
        if PurePosixPath(glob).is_absolute():
            raise ValueError(f"glob {glob!r} must be relative to the vault, not absolute")
        if ".." in glob.split("/"):
            raise ValueError(f"glob {glob!r} must stay inside the vault: no '..'")
    return globs


def _cron(value: object) -> str:
    expr = _non_empty(value)
    CronSchedule.parse(expr)
    return expr


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table like {{ NAME = "value" }}, got {_show(value)}')
    problems: list[tuple[KeyPath, str]] = []
    for name, text in value.items():
        if not name or "=" in name:
            problems.append(((name,), f"{name!r} is not a usable environment variable name"))
        elif not isinstance(text, str):
            problems.append(((name,), f"expected a string, got {_show(text)}"))
    if problems:
        raise _Problems(problems)
    return dict(value)


def _timezone(value: object) -> ZoneInfo:
    name = _non_empty(value)
    zone = _zone(name)
    if zone is None:
        # available_timezones() scans the tz database: only worth it to word an error.
        hint = _hint(name, sorted(available_timezones()))
        raise ValueError(f"unknown IANA time zone {name!r}{hint}")
    return zone


_KEEPER_FIELDS: dict[str, Convert] = {
    "timezone": _timezone,
    "max_runs_per_hour": _integer(0),
    "max_parallel": _integer(1),
    "log_max_size": _log_size,
    "log_backups": _integer(0),
    "history_retention_days": _integer(1),
    "catch_up": _choice("once", "none"),
    "kill_grace": _duration(positive=False),
    "shutdown_grace": _duration(positive=False),
}

_JOB_FIELDS: dict[str, Convert] = {
    "command": _command,
    "cron": _cron,
    "every": _duration(positive=True),
    "on_files": _globs,
    "after": _strings,
    "enabled": _boolean,
    "timeout": _duration(positive=True),
    "retries": _integer(0),
    "retry_delay": _duration(positive=False),
    "max_retry_delay": _duration(positive=False),
    "max_per_hour": _integer(0),
    "overlap": _choice("skip", "queue", "allow"),
    "settle": _duration(positive=False),
    "quarantine_after": _integer(1),
    "secret_env": _strings,
    "env": _env,
    "env_file": _vault_relative,
    "cwd": _non_empty,
    "on_success": _command,
    "on_failure": _command,
    "description": _string,
}

_TOP_LEVEL = ("keeper", "jobs")
# A job name becomes Logs/jobs/<name>.log, so it must be a plain file name.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(keypath: KeyPath) -> str:
    """("jobs", "a b", "cron") -> 'jobs."a b".cron', as the key would be written in TOML."""
    return ".".join(
        part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        for part in keypath
    )


class _Checker:
    """Converts the parsed document while collecting every problem with its line."""

    def __init__(self, path: Path, lines: dict[KeyPath, int]) -> None:
        self.path = path
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def line(self, keypath: KeyPath) -> int:
        """The key's own line, else its nearest enclosing table's (a missing key has none)."""
        for end in range(len(keypath), 0, -1):
            line = self.lines.get(keypath[:end])
            if line is not None:
                return line
        return 0

    def add(self, keypath: KeyPath, message: str) -> None:
        self.issues.append(ConfigIssue(self.path, self.line(keypath), _dotted(keypath), message))

    def fields(
        self, table: dict[str, object], keypath: KeyPath, spec: dict[str, Convert]
    ) -> dict[str, object]:
        converted: dict[str, object] = {}
        for key, value in table.items():
            here = (*keypath, key)
            convert = spec.get(key)
            if convert is None:
                self.add(here, f"unknown key {key!r}{_hint(key, spec)}")
                continue
            try:
                converted[key] = convert(value)
            except _Problems as exc:
                for inner, message in exc.problems:
                    self.add((*here, *inner), message)
            except ValueError as exc:
                self.add(here, str(exc))
        return converted

    def config(self, data: dict[str, object]) -> Config | None:
        for key, value in data.items():
            if key not in _TOP_LEVEL:
                kind = "table" if isinstance(value, dict) else "key"
                hint = " (it belongs under [keeper])" if key in _KEEPER_FIELDS else ""
                self.add((key,), f"unknown {kind} {key!r}{hint or _hint(key, _TOP_LEVEL)}")
        keeper = self.keeper(data.get("keeper", {}))
        jobs = self.jobs(data.get("jobs", {}))
        if keeper is None or jobs is None:
            return None
        return Config(self.path, keeper, jobs)

    def keeper(self, value: object) -> KeeperConfig | None:
        if not isinstance(value, dict):
            self.add(("keeper",), f"expected a table [keeper], got {_show(value)}")
            return None
        fields = self.fields(value, ("keeper",), _KEEPER_FIELDS)
        zone = fields.pop("timezone", None)
        if isinstance(zone, ZoneInfo):
            return KeeperConfig(timezone=zone.key, tz=zone, **fields)
        name, local = default_timezone()
        return KeeperConfig(timezone=name, tz=local, **fields)

    def jobs(self, value: object) -> dict[str, JobConfig] | None:
        if not isinstance(value, dict):
            self.add(("jobs",), f"expected a table of jobs, got {_show(value)}")
            return None
        jobs: dict[str, JobConfig] = {}
        afters: dict[str, tuple[str, ...]] = {}
        for name, body in value.items():
            keypath = ("jobs", name)
            if not _JOB_NAME.fullmatch(name):
                self.add(
                    keypath,
                    f"bad job name {name!r}: it names a log file, so use letters, digits, "
                    "'_', '.' and '-', starting with a letter or digit",
                )
            if not isinstance(body, dict):
                self.add(keypath, f"expected a table [jobs.{name}], got {_show(body)}")
                continue
            fields = self.fields(body, keypath, _JOB_FIELDS)
            if "command" not in body:
                self.add((*keypath, "command"), "missing required key 'command'")
            afters[name] = fields.get("after", ())
            if "command" in fields:
                jobs[name] = JobConfig(name=name, line=self.line(keypath), **fields)
        self.check_after(afters, list(value))
        return jobs

    def check_after(self, afters: dict[str, tuple[str, ...]], names: list[str]) -> None:
        graph: dict[str, list[str]] = {}
        for name, after in afters.items():
            keypath = ("jobs", name, "after")
            for other in after:
                if other == name:
                    self.add(keypath, f"job {name!r} cannot run after itself")
                elif other not in names:
                    self.add(keypath, f"unknown job {other!r}{_hint(other, names)}")
            graph[name] = [other for other in after if other != name and other in afters]
        for cycle in _cycles(graph):
            self.add(
                ("jobs", cycle[0], "after"),
                "jobs wait on each other in a cycle: " + " -> ".join(cycle),
            )


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Cycles found by depth-first search, each closed ("a -> b -> a") and starting at the
    job that comes first in the file, so every cycle is reported once."""
    order = {name: index for index, name in enumerate(graph)}
    on_path: list[str] = []
    done: set[str] = set()
    found: dict[tuple[str, ...], None] = {}

    def visit(name: str) -> None:
        on_path.append(name)
        for other in graph[name]:
            if other in on_path:
                loop = on_path[on_path.index(other) :]
                first = min(range(len(loop)), key=lambda index: order[loop[index]])
                found[tuple(loop[first:] + loop[:first])] = None
            elif other not in done:
                visit(other)
        on_path.pop()
        done.add(name)

    for name in graph:
        if name not in done:
            visit(name)
    return [[*loop, loop[0]] for loop in found]


# Line scanner. tomllib reports no positions, so this walks the same text (already accepted
# by tomllib, hence valid TOML) and notes where each key is defined. It never interprets
# values: it only skips them, so that strings and arrays spanning lines are never read as keys.

_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_SPACE = re.compile(r"[ \t]*")
_SCALAR = re.compile(r"[^,\]}\n#]*")
_BASIC_BODY = re.compile(r'(?:[^"\\\n]|\\.)*"')
_LITERAL_BODY = re.compile(r"[^'\n]*'")
# Up to two quotes may end the content right before the closing three: take the whole run.
_ML_BASIC_BODY = re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""+', re.DOTALL)
_ML_LITERAL_BODY = re.compile(r"(?:[^']|'(?!''))*'''+")


class _KeyLines:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip(_BLANK)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.text.startswith("[", self.pos):
                close = "]]" if self.text.startswith("[[", self.pos) else "]"
                self.pos += len(close)
                table = self.key()
                self.pos += len(close)
                self.record(table, line)
            else:
                self.pair(table, line)

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def skip(self, pattern: re.Pattern[str], offset: int = 0) -> None:
        """Move past `pattern` matched `offset` characters on; it always matches valid TOML."""
        self.pos = pattern.match(self.text, self.pos + offset).end()  # type: ignore[union-attr]

    def record(self, keypath: KeyPath, line: int) -> None:
        # Tables a dotted key or header creates implicitly live where first mentioned;
        # an explicit definition (say [jobs] after [jobs.a]) takes over.
        for end in range(1, len(keypath)):
            self.lines.setdefault(keypath[:end], line)
        self.lines[keypath] = line

    def key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self.skip(_SPACE)
            start, first = self.pos, self.text[self.pos]
            if first == '"':
                self.skip(_BASIC_BODY, 1)
                # Let tomllib decode the escapes so the key matches its own exactly.
                parts.append(tomllib.loads("k = " + self.text[start : self.pos])["k"])
            elif first == "'":
                self.skip(_LITERAL_BODY, 1)
                parts.append(self.text[start + 1 : self.pos - 1])
            else:
                self.skip(_BARE_KEY)
                parts.append(self.text[start : self.pos])
            self.skip(_SPACE)
            if not self.text.startswith(".", self.pos):
                return tuple(parts)
            self.pos += 1

    def pair(self, table: KeyPath | None, line: int) -> None:
        """`key = value`; table None means inside an array, where keys have no fixed path."""
        key = self.key()
        keypath = None if table is None else (*table, *key)
        if keypath is not None:
            self.record(keypath, line)
        self.pos += 1  # the "="
        self.skip(_SPACE)
        self.value(keypath)

    def value(self, keypath: KeyPath | None) -> None:
        text, pos = self.text, self.pos
        if text.startswith('"""', pos):
            self.skip(_ML_BASIC_BODY, 3)
        elif text.startswith("'''", pos):
            self.skip(_ML_LITERAL_BODY, 3)
        elif text[pos] == '"':
            self.skip(_BASIC_BODY, 1)
        elif text[pos] == "'":
            self.skip(_LITERAL_BODY, 1)
        elif text[pos] == "[":
            self.pos += 1
            self.items("]", lambda: self.value(None))
        elif text[pos] == "{":
            self.pos += 1
            self.items("}", lambda: self.pair(keypath, self.line()))
        else:
            self.skip(_SCALAR)

    def items(self, close: str, item: Callable[[], None]) -> None:
        while True:
            self.skip(_BLANK)
            if self.text.startswith(close, self.pos):
                self.pos += 1
                return
            item()
            self.skip(_BLANK)
            if self.text.startswith(",", self.pos):
                self.pos += 1
