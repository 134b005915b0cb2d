"""Connection strings: masked wherever they are shown (they may carry a password), and
connecting with an error that says which database and why, never a traceback."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# key=value strings: password=..., and any value of a key named like a secret.
_KEYWORD_SECRET = re.compile(r"(?i)\b(password|passfile|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|sslpassword)=)[^&]*")
MASK = "***"


class DatabaseUnavailable(Exception):
    """The cluster's database cannot be reached: the message names it (masked) and why."""


def masked(dsn: str) -> str:
    """The DSN with its password (URL userinfo, ?password=, password=...) replaced."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}{':' + MASK if colon else ''}@{hostport}"
        query = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, "?" + parts.query)[1:]
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KEYWORD_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", dsn)


def unavailable(dsn: str, error: BaseException) -> DatabaseUnavailable:
    """The error to raise or show: libpq's first line, with the DSN masked in it too."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    for secret in _secrets(dsn):
        first = first.replace(secret, MASK)
    return DatabaseUnavailable(f"cluster database {masked(dsn)} unreachable: {first}")


def _secrets(dsn: str) -> list[str]:
    found = [m.group(2).strip("'") for m in _KEYWORD_SECRET.finditer(dsn)]
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password:
            found.append(parts.password)
        found += [m.group(0).split("=", 1)[1] for m in _QUERY_SECRET.finditer("?" + parts.query)]
    return [secret for secret in found if secret]
