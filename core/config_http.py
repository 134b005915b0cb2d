"""A job's `http = {...}` and `breaker = {...}` tables: an endpoint the keeper calls
instead of a command, and the circuit breaker that stops calling it while it fails.
Parsed here, and hooked into config_values.JOB_FIELDS (so this module needs nothing of
config_values: a problem inside a table is one ValueError naming each bad key); the call
itself is core/http_job.py's, the breaker's states core/breaker.py's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from watchkeeper.core.units import brief, parse_duration

Convert = Callable[[object], object]
DAY = 86400.0
MIN_TIMEOUT = 0.01  # as a job's timeout

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
# Header names are RFC 9110 tokens; anything else aiohttp would refuse at the first run.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A request body is held in memory for each run, and written to no log.
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class BreakerConfig:
    failures: int  # in a row, to open
    cooldown: float  # seconds open before a probe


@dataclass(frozen=True)
class HttpCall:
    """The request as written: ${VAR}s in `url` and `headers` are expanded at each run,
    from the run's environment (env, env_file, the keeper's own)."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    expect: tuple[int, ...] = ()  # empty: any 2xx
    timeout: float = DEFAULT_TIMEOUT

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300

    @property
    def expected(self) -> str:
        return ", ".join(map(str, self.expect)) if self.expect else "2xx"


def shown_url(url: str) -> str:
    """`url` with its password (if it has one) as ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def summary(call: HttpCall) -> str:
    """The call in a line, as `describe` shows it (no header values, no password)."""
    parts = [f"{call.method} {shown_url(call.url)}", f"expect {call.expected}"]
    if call.headers:
        parts.append("headers " + ", ".join(name for name, _ in call.headers))
    return "; ".join(parts)


def show(value: object) -> str:
    return "a table" if isinstance(value, dict) else brief(value)


def _hint(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    import difflib  # only for a mistake

    matches = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _duration(low: float, high: float, words: str) -> Convert:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"expected a duration from {words}, got {show(value)}")
        return seconds

    return convert


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with its ${VAR}s from `env`, and the values put in (secrets to mask).
    KeyError names a variable the run's environment does not have."""
    used: list[str] = []

    def value(match: re.Match[str]) -> str:
        found = env[match.group(1)]
        used.append(found)
        return found

    return VARIABLE.sub(value, text), used


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a URL like 'https://host/path', got {show(value)}")
    parts = urlsplit(VARIABLE.sub("x", value.strip()))
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {show(value)}")
    if not parts.hostname:
        raise ValueError(f"the URL names no host: {show(value)}")
    return value.strip()


def _method(value: object) -> str:
    if isinstance(value, str) and value.upper() in METHODS:
        return value.upper()
    listed = ", ".join(METHODS)
    raise ValueError(f"expected one of {listed}, got {show(value)}{_hint(value, METHODS)}")


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table like {{ Accept = "text/plain" }}, got {show(value)}')
    for name, text in value.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a usable HTTP header name")
        if not isinstance(text, str) or "\n" in text or "\r" in text:
            raise ValueError(f"{name}: expected a one-line string, got {show(text)}")
    return tuple(value.items())


def _body(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {show(value)}")
    if len(value.encode()) > MAX_BODY:
        raise ValueError(f"a body of {len(value.encode()):,} bytes; at most {MAX_BODY:,}")
    return value


def _expect(value: object) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599
            for code in value
        )
    ):
        raise ValueError(f"expected a list of HTTP status codes (100 to 599), got {show(value)}")
    return tuple(sorted(set(value)))


HTTP_FIELDS: dict[str, Convert] = {
    "url": _url,
    "method": _method,
    "headers": _headers,
    "body": _body,
    "expect": _expect,
    "timeout": _duration(MIN_TIMEOUT, DAY, "10ms to 1d"),
}


def _table(
    value: object, fields: dict[str, Convert], example: str, required: Iterable[str]
) -> dict[str, object]:
    """Each key of an inline table converted; one ValueError naming every bad key."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a table like {example}, got {show(value)}")
    converted: dict[str, object] = {}
    problems: list[str] = []
    for key, item in value.items():
        convert = fields.get(key)
        if convert is None:
            problems.append(f"unknown key {key!r}{_hint(key, fields)}")
            continue
        try:
            converted[key] = convert(item)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    problems += [f"missing required key {key!r}" for key in required if key not in value]
    if problems:
        raise ValueError("; ".join(problems))
    return converted


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"expected an integer from 1 to 1,000, got {show(value)}")
    return value


BREAKER_FIELDS: dict[str, Convert] = {
    "failures": _count,
    "cooldown": _duration(1.0, DAY, "1s to 1d"),
}


def http_call(value: object) -> HttpCall:
    fields = _table(value, HTTP_FIELDS, '{ url = "https://host/health" }', ["url"])
    return HttpCall(**fields)  # type: ignore[arg-type]


def breaker(value: object) -> BreakerConfig:
    fields = _table(value, BREAKER_FIELDS, '{ failures = 5, cooldown = "5m" }', BREAKER_FIELDS)
    return BreakerConfig(**fields)  # type: ignore[arg-type]
