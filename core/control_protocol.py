"""The control socket's wire, shared by the keeper's server and every client: where the
socket lives, the shapes of requests, answers and events (TypedDicts), how a line is
encoded and decoded, the documented limits, and the errors.

Newline-delimited JSON over a Unix socket (mode 0600). A request is one line holding an
object with `op`; the answer is one line, `{"ok": true, ...}` or `{"ok": false, "error":
...}`. `subscribe` turns its connection into a stream of `{"event": kind, "data": ...}`
lines after the first answer (which carries a snapshot).

Light on purpose: the CLI's quick commands import this and the synchronous client only,
never asyncio or the keeper.
"""

# No `from __future__ import annotations`: the TypedDicts' NotRequired keys must be seen at
# run time (__required_keys__), which string annotations hide on Python 3.11.
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from watchkeeper.core.lock import holder

SOCKET_NAME = "watchkeeper.sock"
# sun_path holds 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107
OPS = (
    "status",
    "jobs",
    "history",
    "pause",
    "resume",
    "run",
    "cancel",
    "subscribe",
    "approve",
    "dismiss",
)

# ---- limits (README "Control socket") -------------------------------------------------

MAX_REQUEST = 64 * 1024
MAX_CONNECTIONS = 64
MAX_SUBSCRIBERS = 48  # of MAX_CONNECTIONS: the rest stay free for requests
IDLE_TIMEOUT = 10.0  # a whole request within this of connecting or of the last answer
PARTIAL_TIMEOUT = 5.0  # a request finished within this of its first byte
STALL_LIMIT = 5.0  # an answer or event batch the client takes nothing of for this long
SUBSCRIBER_BACKLOG = 5000  # events a subscriber may fall behind before a resync
HISTORY_LIMIT = 1000
HISTORY_DEPTH = 10_000  # offset + limit: paging deeper is what the history files are for
# The `closed` value of the answer a connection gets as the keeper hangs up on it for
# idling: no request of it was read, so a client may send its request again elsewhere.
CLOSED_IDLE = "idle"


# ---- errors ---------------------------------------------------------------------------


class ControlError(Exception):
    """Talking to the keeper did not work out."""


class ControlUnavailable(ControlError):
    """No keeper answers on this vault's control socket."""


class ControlFailed(ControlError):
    """The keeper answered `ok: false`; the message is its error."""


class RequestError(Exception):
    """A request the keeper cannot act on; its message goes back to the client."""


# ---- shapes ---------------------------------------------------------------------------


class RunJson(TypedDict):
    """A history record, as each line of Logs/history/*.jsonl holds it."""

    id: str
    taskId: str
    taskName: str
    project: str
    startedAt: str
    completedAt: str | None
    status: str
    duration: int | None
    error: str | None
    cronExpression: str | None
    worktreeBranch: str | None
    trigger: str
    attempt: int
    exitCode: int | None
    files: list[str]
    host: str
    params: NotRequired[dict[str, str]]  # only for a job that declares params


class RunningView(TypedDict):
    id: str
    pid: int | None
    trigger: str
    elapsed_s: float


class BreakerView(TypedDict):
    state: str  # closed, open, half-open (core/breaker.py)
    failures: int  # in a row
    open_until: str | None  # ISO 8601, while open


class JobView(TypedDict):
    name: str
    trigger: str
    enabled: bool
    paused: bool
    next_run: str | None
    last: RunJson | None
    running: list[RunningView]
    queued: int
    files_pending: NotRequired[int]  # the keeper's view; absent when read from files
    missed_while_paused: NotRequired[int]
    breaker: NotRequired[BreakerView]  # an http job with a breaker


class QuotaUsage(TypedDict):
    scope: str
    used: int
    limit: int | None
    next_free: str | None


class Today(TypedDict):
    ok: int
    failed: int


class Snapshot(TypedDict):
    vault: str
    state: str
    pid: int
    host: str
    started_at: str
    uptime_s: float
    paused: bool
    running: int
    waiting: int
    today: Today
    quota: list[QuotaUsage]
    runs_last_hour: int
    jobs: list[JobView]


class PlannedRunJson(TypedDict):
    job: str
    kind: str
    detail: str
    outcome: str
    optional: bool
    fires: bool


class PlanJson(TypedDict):
    target: str | None
    waking: list[str]
    runs: list[PlannedRunJson]
    still_paused: list[str]
    everything_paused: bool


class ErrorAnswer(TypedDict):
    ok: Literal[False]
    error: str
    closed: NotRequired[str]  # CLOSED_IDLE: hung up on before any of a request was read


class StatusAnswer(TypedDict):
    ok: Literal[True]
    status: Snapshot


class JobsAnswer(TypedDict):
    ok: Literal[True]
    jobs: list[JobView]


class HistoryAnswer(TypedDict):
    ok: Literal[True]
    runs: list[RunJson]
    bad_lines: int
    next_offset: int | None


class PauseAnswer(TypedDict):
    ok: Literal[True]
    paused: str | None
    changed: bool
    state: str


class ResumeAnswer(TypedDict):
    ok: Literal[True]
    plan: PlanJson
    state: str
    changed: bool


class RunAnswer(TypedDict):
    ok: Literal[True]
    run_id: str
    record: NotRequired[RunJson]  # with `wait`


class CancelAnswer(TypedDict):
    ok: Literal[True]
    cancelled: str


class DecideAnswer(TypedDict):
    """approve / dismiss: the decision as core.triage.DecisionJson has it."""

    ok: Literal[True]
    decision: dict[str, Any]


class SubscribeAnswer(TypedDict):
    ok: Literal[True]
    snapshot: Snapshot


class EventMessage(TypedDict):
    event: str
    data: dict[str, Any]


Answer = (
    ErrorAnswer
    | StatusAnswer
    | JobsAnswer
    | HistoryAnswer
    | PauseAnswer
    | ResumeAnswer
    | RunAnswer
    | CancelAnswer
    | SubscribeAnswer
    | DecideAnswer
)


# ---- lines ----------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One line from the keeper: an answer or an event. ValueError when it is not a JSON
    object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def decode_request(line: bytes) -> dict[str, Any]:
    """One request line, checked as far as every op shares: a JSON object with an `op`
    string. RequestError, with the answer's wording, otherwise."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise RequestError(f"not JSON: {error}") from None
    if not isinstance(request, dict):
        raise RequestError('a request is a JSON object like {"op": "status"}')
    if not isinstance(request.get("op"), str):
        raise RequestError(f"request needs op, one of: {', '.join(OPS)}")
    return request


def error_answer(message: str) -> ErrorAnswer:
    return {"ok": False, "error": message}


def idle_answer(message: str) -> ErrorAnswer:
    return {"ok": False, "error": message, "closed": CLOSED_IDLE}


# ---- where the socket lives -----------------------------------------------------------


def socket_path_for(vault: Path) -> Path:
    """Logs/watchkeeper.sock, or when that path is too long for a Unix socket a short
    one in the user's runtime directory (the lock file records which)."""
    path = vault.resolve() / "Logs" / SOCKET_NAME
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    import hashlib  # only for vaults deep enough to need it

    digest = hashlib.sha256(os.fsencode(vault.resolve())).hexdigest()[:16]
    return _private_runtime_dir() / f"watchkeeper-{digest}.sock"


def _private_runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime)
    import tempfile

    # The temp dir is shared: a directory of our own (0700) keeps others from the socket
    # and from planting one in its place.
    private = Path(tempfile.gettempdir()) / f"watchkeeper-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    status = private.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or private.is_symlink():
        raise OSError(f"{private} is not a private directory of this user")
    return private


def find_socket(vault: Path) -> tuple[Path, dict[str, Any]]:
    """The running keeper's socket and lock record; ControlUnavailable when none runs."""
    record = holder(vault)
    if record is None:
        raise ControlUnavailable("no keeper is running on this vault")
    path = record.get("socket")
    if not isinstance(path, str):
        pid = record.get("pid", "?")
        # In cluster mode: the leader runs on another host, and nothing here forwards to it.
        why = record.get("unreachable") or f"keeper pid {pid} has no control socket"
        raise ControlUnavailable(why if "unreachable" in record else why + " (an older keeper?)")
    return Path(path), record
