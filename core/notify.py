"""Notifications: a run's events sent to the [notify.NAME] channels that want them.

Off the keeper's path: an event is put in its channel's outbox and nothing more happens
on the caller's turn. Each outbox has a task on the loop that sends on a thread pool of
its own, retries with backoff, and keeps to the channel's `rate_window`: one message a
window; what comes meanwhile goes as one digest when the window ends. Every attempt's
outcome is a keeper log line, the URL's secrets masked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from watchkeeper.core.config import Config
from watchkeeper.core.environment import Masker
from watchkeeper.core.history import RunRecord, iso
from watchkeeper.core.notify_events import (
    FAILED,
    NotifyEvent,
    job_event,
    message,
    record_event,
    run_events,
)
from watchkeeper.core.units import format_duration

if TYPE_CHECKING:
    from watchkeeper.core.config_notify import NotifyChannel

# An outbox keeps this many events for its next digest; past it they are only counted.
MAX_PENDING = 1000
FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 60.0
# How long a stopping keeper waits for messages still going out.
CLOSE_GRACE = 3.0
SENDERS = 4


def where(channel: NotifyChannel, mask: Masker) -> str:
    """The channel as sent, as the log shows it: its kind and target, secrets masked."""
    from watchkeeper.core.notify_mask import url_masker

    if isinstance(channel.target, str):
        return f"{channel.kind} {mask(url_masker(channel.target)(channel.target))}"
    return f"command {mask(channel.target[0])}"


class Log(Protocol):
    """Where attempts are told: the keeper log (core/logs.KeeperLog), or the terminal."""

    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


@dataclass
class Outbox:
    channel: NotifyChannel
    pending: list[NotifyEvent] = field(default_factory=list)
    uncounted: int = 0  # events past MAX_PENDING: in the digest's count, not quoted
    next_allowed: float = 0.0  # loop time the next message may go
    task: asyncio.Task[None] | None = None


class Notifier:
    def __init__(self, log: Log, host: str) -> None:
        self.log = log
        self.host = host
        self.config: Config | None = None
        self.outboxes: dict[str, Outbox] = {}
        # Jobs whose last run that ran failed: their next success is `recovered`.
        self.failing: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closing: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, config: Config) -> None:
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._closing = asyncio.Event()
        self.configure(config)

    def configure(self, config: Config) -> None:
        """A (re)loaded config: channels changed in place keep what waits in their outbox."""
        self.config = config
        for name, box in list(self.outboxes.items()):
            if name in config.notify:
                box.channel = config.notify[name]
            elif box.task is None:
                del self.outboxes[name]

    def learn(self, last: Mapping[str, RunRecord]) -> None:
        """The last result of each job before this keeper: a failing job's next success
        is `recovered` even across a restart."""
        self.failing = {name for name, record in last.items() if record.status in FAILED}

    def wants(self, event: str) -> bool:
        config = self.config
        return config is not None and any(event in c.events for c in config.notify.values())

    def channels_of(self, job: str) -> tuple[str, ...]:
        config = self.config
        if config is None or not config.notify:
            return ()
        found = config.jobs.get(job)
        chosen = found.notify if found is not None else None
        return chosen if chosen is not None else config.keeper.notify

    # ---- what happened -----------------------------------------------------------------

    def ended(self, record: RunRecord, retrying: bool = False) -> None:
        """A final record (a run that ran or one that never started). `retrying`: a failed
        attempt the keeper retries: nothing yet, its last attempt tells."""
        names = self.channels_of(record.job)
        if not names or self.config is None or retrying:
            return
        job = self.config.jobs.get(record.job)
        failing_before = record.job in self.failing
        if record.status in FAILED:
            self.failing.add(record.job)
        elif record.status == "success":
            self.failing.discard(record.job)
        retries = job.retries if job is not None else 0
        for event in run_events(record, retries, failing_before):
            self._post(names, record_event(event, record))

    def lost(self, records: Iterable[RunRecord]) -> None:
        """Runs a dead keeper left in flight, just closed as interrupted."""
        for record in records:
            names = self.channels_of(record.job)
            if names:
                self._post(names, record_event("lost", record))

    def missed(self, job: str, reason: str, when: float) -> None:
        """A slot (its wall time `when`) that passed without a run: paused, or no keeper
        was running."""
        names = self.channels_of(job)
        if names:
            stamp = iso(datetime.fromtimestamp(when, UTC)) or ""
            self._post(names, job_event("missed", job, stamp, f"slot missed: {reason}"))

    def _post(self, names: tuple[str, ...], event: NotifyEvent) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._post, names, event)
            return
        assert self.config is not None
        for name in names:
            channel = self.config.notify.get(name)
            if channel is None or event["event"] not in channel.events:
                continue
            box = self.outboxes.setdefault(name, Outbox(channel))
            if len(box.pending) < MAX_PENDING:
                box.pending.append(event)
            else:
                box.uncounted += 1
            if box.task is None:
                box.task = loop.create_task(self._pump(box))

    # ---- delivery ----------------------------------------------------------------------

    async def _pump(self, box: Outbox) -> None:
        """Sends what the outbox holds, one message a rate window, until it is empty."""
        loop = asyncio.get_running_loop()
        try:
            while box.pending:
                wait = box.next_allowed - loop.time()
                if wait > 0:
                    await self._pause(wait)
                events, box.pending = box.pending, []
                extra, box.uncounted = box.uncounted, 0
                box.next_allowed = loop.time() + box.channel.rate_window
                await self._deliver(box.channel, events, extra)
        finally:
            box.task = None

    async def _pause(self, seconds: float) -> None:
        """Sleeps, or less once the keeper stops (what waits then goes at once)."""
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _deliver(self, channel: NotifyChannel, events: list[NotifyEvent], extra: int) -> bool:
        # Only a keeper with a channel to send to loads how messages go out.
        from watchkeeper.core.notify_mask import resolve
        from watchkeeper.core.notify_send import SendFailed, send

        assert self.config is not None
        loop = asyncio.get_running_loop()
        vault = self.config.vault
        sent = message(events, vault.name, self.host, channel.rate_window, extra)
        what = sent["event"] if sent["count"] == 1 else f"digest of {sent['count']} events"
        try:
            sending, mask = resolve(channel, os.environ)
        except KeyError as missing:
            self.log.error(
                f"notify {channel.name}: {what} not sent: ${{{missing.args[0]}}} is not set "
                "in the keeper's environment"
            )
            return False
        shown = where(sending, mask)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="watchkeeper-notify")
        for attempt in range(1, channel.attempts + 1):
            try:
                how = await loop.run_in_executor(self._pool, send, sending, sent, vault)
            except SendFailed as error:
                why = mask(str(error))
            except Exception as error:  # a bug in a sender (or Apprise): logged, not fatal
                why = mask(f"{type(error).__name__}: {error}")
            else:
                self.log.info(
                    f"notify {channel.name}: {what} sent to {shown} "
                    f"(attempt {attempt}, {mask(how)})"
                )
                return True
            closing = self._closing is not None and self._closing.is_set()
            if attempt == channel.attempts or closing:
                self.log.error(
                    f"notify {channel.name}: {what} to {shown} not sent: attempt "
                    f"{attempt} of {channel.attempts} failed: {why}; giving up"
                    + ("  (keeper stopping)" if closing and attempt < channel.attempts else "")
                )
                return False
            delay = min(LONGEST_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
            self.log.warning(
                f"notify {channel.name}: {what} to {shown}: attempt {attempt} of "
                f"{channel.attempts} failed: {why}; retry in {format_duration(delay)}"
            )
            await self._pause(delay)
        return False

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """What waits for its window goes now; what is still going after `grace` is
        given up and logged."""
        if self._closing is not None:
            self._closing.set()
        tasks = [box.task for box in self.outboxes.values() if box.task is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            for box in self.outboxes.values():
                if box.task in late:
                    self.log.error(
                        f"notify {box.channel.name}: still sending after {grace:g}s as the "
                        f"keeper stopped; {len(box.pending) + box.uncounted} more event(s) "
                        "not sent"
                    )
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def test(self, name: str) -> bool:
        """`notify test NAME`: one message to the channel, its attempts logged."""
        assert self.config is not None
        channel = self.config.notify[name]
        event = job_event("test", "", iso(datetime.now().astimezone()) or "",
                          "a test notification from `watchkeeper notify test`")
        try:
            return await self._deliver(channel, [event], 0)
        finally:
            await self.close()
