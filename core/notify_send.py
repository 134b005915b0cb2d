"""Sending one message to one channel, blocking: called on a worker thread of the
notifier's own (core/notify.py), never on the keeper's loop."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from watchkeeper.core.config_notify import NotifyChannel
from watchkeeper.core.notify_events import Message

# Apprise says why a send failed only in its logger ("apprise"): listened to one send at
# a time, so that each failure quotes its own reason.
_APPRISE = threading.Lock()
# What of a refusal's answer (an HTTP body, a command's stderr) goes to the keeper log.
EXCERPT = 200


class SendFailed(Exception):
    """This attempt failed: the message says why (masked by the caller before it is shown)."""


def send(channel: NotifyChannel, message: Message, vault: Path) -> str:
    """Deliver `message`; a few words on how it went (HTTP 200), or SendFailed."""
    if channel.kind == "webhook":
        assert isinstance(channel.target, str)
        return _webhook(channel.target, message, channel.timeout)
    if channel.kind == "url":
        assert isinstance(channel.target, str)
        return _apprise(channel.target, message)
    return _command(channel.target, message, channel.timeout, vault)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def _webhook(url: str, message: Message, timeout: float) -> str:
    # Here, on the notifier's thread, not at the top: urllib.request (http.client, email)
    # costs every keeper start, a one-off `watchkeeper run` too, some 10 ms otherwise.
    import urllib.error
    import urllib.request

    body = json.dumps(message).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "watchkeeper"}
    parts = urlsplit(url)
    if parts.username is not None:
        # urllib would take user:password@ for part of the host name: sent as Basic auth.
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        detail = _excerpt(error.read(EXCERPT * 2).decode(errors="replace"))
        raise SendFailed(f"HTTP {error.code}" + (f": {detail}" if detail else "")) from None
    except urllib.error.URLError as error:
        raise SendFailed(str(error.reason)) from None
    except (TimeoutError, OSError, ValueError) as error:
        raise SendFailed(str(error) or type(error).__name__) from None


def _apprise(url: str, message: Message) -> str:
    import apprise  # the notify extra, checked when the config was read

    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise SendFailed("Apprise does not accept this URL")
    title = f"watchkeeper: {message['event']}"
    heard = _Heard()
    logger = logging.getLogger("apprise")
    with _APPRISE:
        logger.addHandler(heard)
        try:
            sent = notifier.notify(title=title, body=message["text"])
        finally:
            logger.removeHandler(heard)
    if not sent:
        said = _excerpt("; ".join(heard.lines))
        raise SendFailed("Apprise could not send" + (f": {said}" if said else ""))
    return "sent through Apprise"


class _Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _command(
    command: str | tuple[str, ...], message: Message, timeout: float, vault: Path
) -> str:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    try:
        done = subprocess.run(
            argv,
            input=json.dumps(message).encode(),
            capture_output=True,
            timeout=timeout,
            cwd=vault,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SendFailed(f"command did not finish within {timeout:g}s; killed") from None
    except OSError as error:
        raise SendFailed(f"cannot start {argv[0]}: {error.strerror}") from None
    if done.returncode != 0:
        said = _excerpt(done.stderr.decode(errors="replace"))
        raise SendFailed(f"command exit {done.returncode}" + (f": {said}" if said else ""))
    return "command exit 0"
