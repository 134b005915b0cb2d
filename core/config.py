"""watchkeeper.toml: read with tomllib, every key validated, every error located."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from watchkeeper.core.config_isolate import isolation_problems
from watchkeeper.core.config_lines import (
    BARE_KEY,
    KeyPath,
    LazyKeyLines,
    syntax_error,
    unreadable_value,
)
from watchkeeper.core.config_notify_check import check_notify
from watchkeeper.core.config_parse import parse_toml
from watchkeeper.core.config_table import Shared, convert_table
from watchkeeper.core.config_values import (
    DEFAULT_LOG_MODE,
    JOB_FIELDS,
    KEEPER_FIELDS,
    ON_KEEPER,
    VAULT_PATHS,
    Convert,
    Problems,
    hint,
    kind_problem,
    no_entries,
    show,
    zone,
)
from watchkeeper.core.config_vault import VaultSettings, parse_vault
from watchkeeper.core.limits import limit_problems

if TYPE_CHECKING:
    from watchkeeper.core.config_cluster import ClusterConfig
    from watchkeeper.core.config_http import BreakerConfig, HttpCall
    from watchkeeper.core.config_notify import NotifyChannel

CONFIG_NAME = "watchkeeper.toml"

Command = tuple[str, ...] | str
"""An argv list (no shell) or a string run under /bin/sh -c."""


@dataclass(frozen=True, slots=True)  # one per job: thousands of them
class JobConfig:
    name: str
    command: Command = ""  # "" for an http job
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
    unique_by: str | None = None  # "title": not handed when the title is there (core/titles.py)
    secret_env: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=no_entries)
    env_file: str | None = None
    cwd: str | None = None
    on_success: Command | None = None
    on_failure: Command | None = None
    description: str = ""
    # "keeper" (the leader's host), "any" worker, or labels a worker must all have.
    runs_on: tuple[str, ...] = ON_KEEPER
    http: HttpCall | None = None  # an endpoint called instead of a command
    breaker: BreakerConfig | None = None  # an http job's circuit breaker
    # Declared run parameters and their defaults (core/params.py); {} takes none.
    params: dict[str, str] = field(default_factory=no_entries)
    # [notify.NAME] channels for this job's events; None: the keeper's `notify` default.
    notify: tuple[str, ...] | None = None
    # isolate = "worktree": each run in a fresh git worktree of `repo` (core/worktree.py).
    isolate: str | None = None
    repo: str | None = None
    base: str | None = None  # None: the repository's HEAD
    keep_failed: bool = False
    merge: str | None = None  # "ff": fast-forward base to a successful run's branch
    jitter: float = 0.0  # each scheduled start up to this much later (core/slots.py)
    timezone: str | None = None  # its cron's zone; None: the keeper's
    # Resource limits of each run (core/limits.py); None: not limited.
    memory_max: int | None = None
    tasks_max: int | None = None
    cpu_weight: int | None = None
    nice: int | None = None
    io_weight: int | None = None
    line: int = 0

    @property
    def scheduled(self) -> bool:
        return self.cron is not None or self.every is not None

    @property
    def trigger_summary(self) -> str:
        parts = []
        if self.cron is not None:
            parts.append(f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else ""))
        if self.every is not None:
            from watchkeeper.core.units import format_duration

            parts.append(f"every {format_duration(self.every)}")
        if self.on_files:
            parts.append("files " + ",".join(self.on_files))
        if self.after:
            parts.append("after " + ",".join(self.after))
        if self.jitter and self.scheduled:
            from watchkeeper.core.units import format_duration

            parts.append(f"jitter {format_duration(self.jitter)}")
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
    # Rotated logs (job.log.1, watchkeeper.log.2...) older than this are removed.
    log_retention_days: int | None = None
    notify: tuple[str, ...] = ()
    catch_up: str = "once"
    kill_grace: float = 5.0
    shutdown_grace: float = 30.0
    # Logs/ gets this mode; the files in it the same bits without execute (`file_mode`).
    log_mode: int = DEFAULT_LOG_MODE

    @property
    def file_mode(self) -> int:
        return self.log_mode & 0o660 | 0o600


@dataclass(frozen=True)
class Config:
    path: Path
    keeper: KeeperConfig
    jobs: dict[str, JobConfig]
    # Present: cluster mode (core/cluster/); absent: one keeper, no database.
    cluster: ClusterConfig | None = None
    notify: dict[str, NotifyChannel] = field(default_factory=dict)
    vault_settings: VaultSettings = field(default_factory=VaultSettings)  # [vault]

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


# Read whole and parsed in memory, on every reload: a runaway file must not take the keeper.
MAX_CONFIG_BYTES = 16 * 2**20


def load_config(path: Path) -> Config:
    """Read and validate the config file at `path`; any problem raises ConfigError."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue(path, 0, "<file>", f"cannot read: {reason}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        message = f"over {MAX_CONFIG_BYTES // 2**20} MiB: too large to be a config, not read"
        raise ConfigError([ConfigIssue(path, 0, "<file>", message)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        issue = ConfigIssue(path, line, "<file>", f"not UTF-8 text: {exc.reason}")
        raise ConfigError([issue]) from None
    return parse_config(text, path)


# The key of an issue that is a bug of ours, caught so that it is not a crash.
INTERNAL = "<internal>"
# Deeper than any key takes, far short of what tomllib recurses to: where a value too deep
# for tomllib is reported.
_NESTING = 100


def parse_config(text: str, path: Path) -> Config:
    """Validate every key of a TOML document; ConfigError lists all problems, sorted by line.
    No other exception leaves: a reload must never take down the watch that called it."""
    try:
        parsed = parse_toml(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = syntax_error(exc, text)
        issue = ConfigIssue(path, line, "<toml>", f"TOML syntax error: {message}")
        raise ConfigError([issue]) from None
    except (ValueError, RecursionError) as exc:
        line, message = unreadable_value(exc, text, _NESTING)
        raise ConfigError([ConfigIssue(path, line, "<toml>", message)]) from None
    except Exception as exc:
        raise _internal(path, exc) from None
    try:
        checker = _Checker(path, LazyKeyLines(text, parsed.job_lines))
        config = checker.config(parsed.document)
    except Exception as exc:
        raise _internal(path, exc) from None
    if checker.issues or config is None:
        raise ConfigError(sorted(checker.issues, key=lambda issue: issue.line))
    return config


def _internal(path: Path, exc: Exception) -> ConfigError:
    """A bug of ours, not the operator's: still reported as a config problem, not a crash."""
    message = f"could not be checked ({type(exc).__name__}: {exc}); please report this"
    return ConfigError([ConfigIssue(path, 0, INTERNAL, message)])


def default_timezone() -> tuple[str, ZoneInfo]:
    """The machine's zone: $TZ, else what /etc/localtime links to, else its contents, else UTC."""
    name = _iana_name(os.environ.get("TZ", "").removeprefix(":"))
    found = zone(name) if name else None
    if found is not None:
        return name, found
    return _localtime_zone(Path("/etc/localtime"))


def _localtime_zone(link: Path) -> tuple[str, ZoneInfo]:
    try:
        target = os.readlink(link)
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        name = _iana_name(target)
        found = zone(name)
        if found is not None:
            return name, found
    try:
        with link.open("rb") as fh:
            return "localtime", ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return "UTC", ZoneInfo("UTC")


def _iana_name(text: str) -> str:
    """Turns "/usr/share/zoneinfo/Europe/Berlin" into "Europe/Berlin"; other text unchanged."""
    return text.rsplit("zoneinfo/", 1)[-1]


_TOP_LEVEL = ("keeper", "jobs", "cluster", "notify", "vault")
# A job name becomes Logs/jobs/<name>.log, so it must be a plain file name.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _dotted(keypath: KeyPath) -> str:
    """("jobs", "a b", "cron") -> 'jobs."a b".cron', as the key would be written in TOML."""
    return ".".join(
        part if BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        for part in keypath
    )


class _Checker:
    """Converts the parsed document while collecting every problem with its line."""

    def __init__(self, path: Path, lines: LazyKeyLines) -> None:
        self.path = path
        self.lines = lines
        self.issues: list[ConfigIssue] = []
        self.shared = Shared()

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
    ) -> dict[str, Any]:
        """Each key's converted value (typed per `spec`, so Any to the dataclasses)."""
        converted, problems = convert_table(table, spec)
        for inner, message in problems:
            self.add((*keypath, *inner), message)
        return converted

    def config(self, data: dict[str, object]) -> Config | None:
        for key, value in data.items():
            if key not in _TOP_LEVEL:
                kind = "table" if isinstance(value, dict) else "key"
                where = " (it belongs under [keeper])" if key in KEEPER_FIELDS else ""
                self.add((key,), f"unknown {kind} {key!r}{where or hint(key, _TOP_LEVEL)}")
        keeper = self.keeper(data.get("keeper", {}))
        jobs = self.jobs(data.get("jobs", {}))
        cluster = self.cluster(data.get("cluster"))
        vault_settings = self.vault_table(data.get("vault", {}))
        channels = check_notify(self, data.get("notify", {}), keeper, jobs)
        if keeper is None or jobs is None:
            return None
        if cluster is None:
            for name, job in jobs.items():
                if job.runs_on != ON_KEEPER:
                    self.add(
                        ("jobs", name, "runs_on"),
                        "runs on workers only in cluster mode: add a [cluster] table",
                    )
        return Config(self.path, keeper, jobs, cluster, channels, vault_settings=vault_settings)

    def vault_table(self, value: object) -> VaultSettings:
        if not isinstance(value, dict):
            self.add(("vault",), f"expected a table [vault], got {show(value)}")
            return VaultSettings()
        try:
            settings = parse_vault(value)
        except Problems as exc:
            for inner, message in exc.problems:
                self.add(("vault", *inner), message)
            return VaultSettings()
        if not self.stays_inside(settings.approve_to):
            self.add(("vault", "approve_to"), f"{settings.approve_to!r} leads outside the vault")
        return settings

    def cluster(self, value: object) -> ClusterConfig | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(("cluster",), f"expected a table [cluster], got {show(value)}")
            return None
        from watchkeeper.core.config_cluster import parse_cluster  # cluster mode only

        try:
            return parse_cluster(value, self.path.parent.name)
        except Problems as exc:
            for inner, message in exc.problems:
                self.add(("cluster", *inner), message)
            return None

    def keeper(self, value: object) -> KeeperConfig | None:
        if not isinstance(value, dict):
            self.add(("keeper",), f"expected a table [keeper], got {show(value)}")
            return None
        fields = self.fields(value, ("keeper",), KEEPER_FIELDS)
        chosen = fields.pop("timezone", None)
        if isinstance(chosen, ZoneInfo):
            return KeeperConfig(timezone=chosen.key, tz=chosen, **fields)
        name, local = default_timezone()
        return KeeperConfig(timezone=name, tz=local, **fields)

    def jobs(self, value: object) -> dict[str, JobConfig] | None:
        if not isinstance(value, dict):
            self.add(("jobs",), f"expected a table of jobs, got {show(value)}")
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
                self.add(keypath, f"expected a table [jobs.{name}], got {show(body)}")
                continue
            fields = self.fields(body, keypath, JOB_FIELDS)
            for key in VAULT_PATHS:
                if key in fields and not self.stays_inside(fields[key]):
                    self.add((*keypath, key), f"{fields.pop(key)!r} leads outside the vault")
            for key, message in isolation_problems(name, fields, self.path.parent):
                self.add((*keypath, key), message)
            for key, message in limit_problems(fields):
                self.add((*keypath, key), message)
            if (kind := kind_problem(body, fields)) is not None:
                self.add((*keypath, kind[0]), kind[1])
            if "unique_by" in fields and not fields.get("on_files"):
                self.add((*keypath, "unique_by"), "unique_by goes with on_files")
            afters[name] = fields.get("after", ())
            if "command" in fields or "http" in fields:
                fields = self.shared.values(fields)
                jobs[name] = JobConfig(name=name, line=self.line(keypath), **fields)
        self.check_after(afters, list(value))
        return jobs

    def stays_inside(self, relative: str) -> bool:
        """Whether a vault-relative path, its symlinks followed, ends inside the vault."""
        vault = os.path.realpath(self.path.parent)
        target = os.path.realpath(os.path.join(vault, relative))
        return os.path.commonpath([vault, target]) == vault

    def check_after(self, afters: dict[str, tuple[str, ...]], names: list[str]) -> None:
        known = set(names)
        graph: dict[str, list[str]] = {}
        for name, after in afters.items():
            keypath = ("jobs", name, "after")
            for other in after:
                if other == name:
                    self.add(keypath, f"job {name!r} cannot run after itself")
                elif other not in known:
                    self.add(keypath, f"unknown job {other!r}{hint(other, names)}")
            graph[name] = [other for other in after if other != name and other in afters]
        for cycle in _cycles(graph):
            self.add(
                ("jobs", cycle[0], "after"),
                "jobs wait on each other in a cycle: " + _loop_text(cycle),
            )


def _loop_text(cycle: list[str]) -> str:
    """a -> b -> a; a cycle through thousands of jobs shortened to fit a line."""
    if len(cycle) <= 12:
        return " -> ".join(cycle)
    skipped = len(cycle) - 9
    return " -> ".join([*cycle[:6], f"... {skipped} more ...", *cycle[-3:]])


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Cycles found by depth-first search, each closed ("a -> b -> a") and starting at the
    job that comes first in the file, so every cycle is reported once. The search keeps its
    path on a stack of its own: a chain of thousands of jobs must not exhaust Python's."""
    order = {name: index for index, name in enumerate(graph)}
    done: set[str] = set()
    found: dict[tuple[str, ...], None] = {}
    for root in graph:
        if root in done:
            continue
        path, at = [root], {root: 0}
        branches = [iter(graph[root])]
        while branches:
            other = next(branches[-1], None)
            if other is None:
                branches.pop()
                finished = path.pop()
                del at[finished]
                done.add(finished)
            elif other in at:
                loop = path[at[other] :]
                first = min(range(len(loop)), key=lambda index: order[loop[index]])
                found[tuple(loop[first:] + loop[:first])] = None
            elif other not in done:
                at[other] = len(path)
                path.append(other)
                branches.append(iter(graph[other]))
    return [[*loop, loop[0]] for loop in found]
