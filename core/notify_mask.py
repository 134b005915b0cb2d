"""Notification URLs shown in the keeper log with their secrets masked: a webhook's or an
Apprise URL's password, query values and path pieces long enough to be keys (Slack's and
Discord's webhooks carry theirs in the path, Telegram's bot token is the host)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from watchkeeper.core.environment import Masker

# Long runs of key characters, no dots: a token, never a host name or a plain word.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,}")


def url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a port that is not a number: nothing can be told apart, mask it all
        return [url.partition("://")[2]] if "://" in url else [url]
    found = [password] if password else []
    found += [value for _key, value in parse_qsl(parts.query) if len(value) >= 4]
    found += _TOKEN.findall(parts.netloc.rpartition("@")[2] + parts.path)
    if parts.username and _TOKEN.fullmatch(parts.username):
        found.append(parts.username)
    return found


def url_masker(url: str) -> Masker:
    """Masks this URL's secrets wherever they show: the URL itself, an error quoting it."""
    return Masker(url_secrets(url))
