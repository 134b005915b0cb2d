"""Notification targets as sent and as shown: their ${VAR}s expanded from the keeper's
environment at send time, and what the keeper log shows with their secrets masked: the
values ${VAR}s put in, a webhook's or an Apprise URL's password, query values and path
pieces long enough to be keys (Slack's and Discord's webhooks carry theirs in the path,
Telegram's bot token is the host)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

from watchkeeper.core.config_http import VARIABLE, expand
from watchkeeper.core.config_notify import NotifyChannel
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


def resolve(channel: NotifyChannel, env: Mapping[str, str]) -> tuple[NotifyChannel, Masker]:
    """The channel as sent, its URL's or argv's ${VAR}s expanded from `env`, and the masker
    of every line about it. A command string is left to /bin/sh, which expands them from
    the same environment: their values are masked alike. KeyError names a variable `env`
    lacks (sending to `https://host/${UNSET}` would only fail less clearly)."""
    target = channel.target
    if channel.kind == "command" and isinstance(target, str):
        names = VARIABLE.findall(target)
        return channel, Masker(env[name] for name in names if name in env)
    if isinstance(target, str):
        url, used = expand(target, env)
        return replace(channel, target=url), Masker([*used, *url_secrets(url)])
    argv: list[str] = []
    used = []
    for word in target:
        text, put = expand(word, env)
        argv.append(text)
        used += put
    return replace(channel, target=tuple(argv)), Masker(used)
