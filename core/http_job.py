"""HTTP jobs: the second kind of Executor (core/seams.py), a request made in the keeper
with aiohttp on its loop, no child process; and the router that sends each run with an
`http` spec here and every other run on to the executor the keeper was given (the
LocalExecutor, or a cluster leader's RoutingExecutor), so the two compose.

Why aiohttp (bench/http_jobs.py and README "HTTP jobs" have the numbers): on this box a
burst of 1,000 requests to a local server cost the keeper's process 128 µs of CPU each
with aiohttp, 394 µs with urllib in a thread pool (a connection per request) and 2 ms
with httpx; a single request took 0.42 ms (p50) against 0.66 and 0.96 ms. Its import
(0.3 s) is paid only by a keeper that has an http job, on a thread as it starts.

A run's job log gets the request (secrets masked), the status, its duration and a
bounded excerpt of the body; its record gets `exitCode` = the status, and for a status
outside `expect` an error quoting the excerpt's start. A connection failure or a timeout
has no status: its error says what happened. Each end goes to the job's breaker
(core/breaker.py) before the run's `done` resolves, so its record and the breaker agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import sys
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from watchkeeper.core.breaker import Breakers
from watchkeeper.core.environment import Masker
from watchkeeper.core.history_format import elapsed_ms
from watchkeeper.core.runner import Ending, RunOutcome, RunSpec
from watchkeeper.core.seams import Clock, Executor
from watchkeeper.core.units import format_duration

if TYPE_CHECKING:
    import aiohttp

    from watchkeeper.core.config_http import BreakerConfig, HttpCall

EXCERPT = 1024  # bytes of a response body kept in the job log
ERROR_EXCERPT = 200  # characters of it quoted in a failed run's error
# Connections open at once to all endpoints (aiohttp's default): kept alive and reused,
# so 1,000 calls a second to one host do not each connect.
CONNECTIONS = 100
# Header names whose values are credentials whatever the variable they came from.
_SECRET_HEADER = re.compile(r"AUTHORIZATION|COOKIE|TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)


@dataclass
class _Request:
    """A call with its ${VAR}s expanded, and what of it must never be shown."""

    url: str
    headers: dict[str, str]
    masker: Masker
    shown_url: str


def prepare(call: HttpCall, env: dict[str, str]) -> _Request:
    """KeyError names a ${VAR} the run's environment lacks."""
    # An http job's run: core/config_http.py is loaded by the config that declared it.
    from watchkeeper.core.config_http import expand, shown_url

    url, secrets = expand(call.url, env)
    headers: dict[str, str] = {}
    for name, text in call.headers:
        value, used = expand(text, env)
        headers[name] = value
        secrets += used
        if _SECRET_HEADER.search(name):
            secrets.append(value)
            secrets += value.split()[1:]  # "Bearer abc": abc alone, as a server may echo it
    parts = urlsplit(url)
    if parts.password:
        # aiohttp sends these as Basic auth: a server echoing its header shows them so.
        basic = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
        secrets += [parts.password, unquote(parts.password), b64encode(basic.encode()).decode()]
    return _Request(url, headers, Masker(secrets), shown_url(url))


class HttpRun(Ending):
    """One request in flight: both what submit() delivers (seams.Started) and what
    watch() returns (seams.RunHandle)."""

    pid: int | None = None

    def __init__(self, spec: RunSpec, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.spec = spec
        self.started_mono = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.stopped: tuple[str, str] | None = None
        self._held: list[bytes] = []
        self._on_output: Callable[[bytes], None] | None = None

    def output(self, data: bytes) -> None:
        if self._on_output is None:
            self._held.append(data)
        else:
            self._on_output(data)

    def watched(self, on_output: Callable[[bytes], None]) -> HttpRun:
        self._on_output = on_output
        held, self._held = self._held, []
        for data in held:
            on_output(data)
        return self

    def stop(self, status: str, reason: str) -> None:
        if self.stopped is None and self.final is None and self.task is not None:
            self.stopped = (status, reason)
            self.task.cancel()


class HttpExecutor:
    """Runs http specs on the loop it is first used from, one aiohttp session for all."""

    def __init__(
        self,
        deliver: Callable[[list[tuple[Any, Any]]], None],
        ended: Callable[[RunSpec, RunOutcome], None],
    ) -> None:
        self._deliver = deliver
        self._ended = ended
        self._session: aiohttp.ClientSession | None = None
        self._runs: set[HttpRun] = set()

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        loop = asyncio.get_running_loop()
        delivered: list[tuple[Any, Any]] = []
        for token, spec in batch:
            run = HttpRun(spec, loop)
            run.task = loop.create_task(self._call(run))
            self._runs.add(run)
            delivered.append((token, run))
        self._deliver(delivered)

    def watch(self, spec: RunSpec, started: HttpRun, on_output: Callable[[bytes], None]) -> HttpRun:
        return started.watched(on_output)

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> HttpRun:
        raise OSError(0, "hooks are commands, not http calls")

    def shutdown(self) -> None:
        for run in list(self._runs):
            run.stop("interrupted", "keeper stopped")
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(RuntimeError):  # no loop: the session dies with it
                asyncio.get_running_loop().create_task(session.close())

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp  # a keeper without http jobs never pays its import

            connector = aiohttp.TCPConnector(limit=CONNECTIONS, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, trust_env=False
            )
        return self._session

    async def _call(self, run: HttpRun) -> None:
        call = run.spec.http
        assert call is not None
        outcome: RunOutcome
        try:
            request = prepare(call, run.spec.env)
        except KeyError as missing:
            outcome = RunOutcome("failure", None, f"${{{missing.args[0]}}} is not set", 0)
        else:
            outcome = await self._request(run, call, request)
        self._runs.discard(run)
        self._ended(run.spec, outcome)
        run.finish_with(outcome)

    async def _request(self, run: HttpRun, call: HttpCall, request: _Request) -> RunOutcome:
        import aiohttp

        mask = request.masker
        limit = min(call.timeout, run.spec.timeout or call.timeout)
        began = time.monotonic()
        line = f"{call.method} {mask(request.shown_url)}"

        def took() -> int:
            return elapsed_ms(time.monotonic() - began)

        try:
            async with self._client().request(
                call.method,
                request.url,
                headers=request.headers,
                data=call.body.encode() if call.body is not None else None,
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as response:
                body = await _excerpt(response.content)
                status, reason = response.status, response.reason or ""
        except asyncio.CancelledError:
            if run.stopped is None:
                raise
            status_word, why = run.stopped
            run.output(f"{line} → {status_word}: {why}\n".encode())
            return RunOutcome(status_word, None, why, took())
        except TimeoutError:
            why = f"timed out after {format_duration(limit)}"
            run.output(f"{line} → {why}\n".encode())
            return RunOutcome("timeout", None, why, took())
        except (aiohttp.ClientError, OSError, ValueError) as error:
            why = f"connection failed: {mask(str(error) or type(error).__name__)}"
            run.output(f"{line} → {why}\n".encode())
            return RunOutcome("failure", None, why, took())
        ms = took()
        ok = call.accepts(status)
        verdict = "" if ok else f" (expected {call.expected})"
        text = mask(body.decode("utf-8", "replace"))
        more = " …" if len(body) > EXCERPT else ""
        shown = text[: len(text) - 1] if more else text  # the cut may end mid-character
        run.output(
            f"{line} → {status} {reason} in {ms} ms{verdict}\n".encode()
            + (f"{shown}{more}\n".encode() if shown.strip() else b"")
        )
        if ok:
            return RunOutcome("success", status, None, ms)
        quoted = " ".join(text.split())[:ERROR_EXCERPT]
        why = f"HTTP {status}, expected {call.expected}" + (f": {quoted}" if quoted else "")
        return RunOutcome("failure", status, why, ms)


async def _excerpt(content: Any) -> bytes:
    """Up to EXCERPT + 1 bytes of the body (the one more says there was more)."""
    chunks: list[bytes] = []
    size = 0
    while size <= EXCERPT:
        chunk = await content.read(EXCERPT + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class HttpRouting:
    """The Executor the keeper's runs go through: http specs to an HttpExecutor (and
    their ends to the job's breaker), the rest to `inner`, hooks always to `inner`."""

    def __init__(
        self,
        inner: Executor,
        deliver: Callable[[list[tuple[Any, Any]]], None],
        clock: Clock,
        tz: tzinfo,
        breaker_of: Callable[[str], BreakerConfig | None],
        moved: Callable[[str, str], None],
    ) -> None:
        """`breaker_of`: a job's breaker settings now (None: it has none); `moved`:
        told (job, what happened) when a breaker changes state."""
        self.inner = inner
        self.breakers = Breakers(clock, tz)
        self._breaker_of = breaker_of
        self._moved = moved
        self.http = HttpExecutor(deliver, self._ended)

    def warm(self, http_jobs: Iterable[bool]) -> None:
        """With an http job in the config, import aiohttp on a thread now: its import (and
        the TLS contexts it makes) held the loop some 0.3 s at the first call, late enough
        to delay the slots around it."""
        if any(http_jobs) and "aiohttp" not in sys.modules:
            threading.Thread(target=importlib.import_module, args=("aiohttp",), daemon=True).start()

    def submit(self, batch: list[tuple[Any, RunSpec]]) -> None:
        calls = [item for item in batch if item[1].http is not None]
        if calls:
            self.http.submit(calls)
            batch = [item for item in batch if item[1].http is None]
        if batch:
            self.inner.submit(batch)

    def watch(self, spec: RunSpec, started: Any, on_output: Callable[[bytes], None]) -> Any:
        if isinstance(started, HttpRun):
            return self.http.watch(spec, started, on_output)
        return self.inner.watch(spec, started, on_output)

    def run(self, spec: RunSpec, on_output: Callable[[bytes], None]) -> Any:
        return self.inner.run(spec, on_output)

    def shutdown(self) -> None:
        self.http.shutdown()
        self.inner.shutdown()

    def refusal(self, job: str) -> str | None:
        """Why a run of `job` is skipped now (its breaker is open), else None."""
        config = self._breaker_of(job)
        if config is None:
            return None
        return self.breakers.get(job).admit(config)

    def _ended(self, spec: RunSpec, outcome: RunOutcome) -> None:
        config = self._breaker_of(spec.job)
        if config is None:
            return
        breaker = self.breakers.get(spec.job)
        if outcome.status in ("success", "failure", "timeout"):
            changed = breaker.record(config, outcome.status == "success")
            if changed == "open":
                self._moved(
                    spec.job,
                    f"circuit open for {format_duration(config.cooldown)} after"
                    f" {breaker.failures} failure(s) in a row",
                )
            elif changed is not None:
                self._moved(spec.job, f"circuit {changed}")
        else:
            breaker.release()
