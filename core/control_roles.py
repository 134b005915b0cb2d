"""Read-only sessions on the control socket.

Whoever can open the socket (mode 0600) is the keeper's own user and may do anything.
A process that serves others on that user's behalf (`watchkeeper serve`: the HTTP
server, the browser consoles it spawns for `read` tokens) marks its requests with
`"role": "read"`; the keeper then refuses every op that changes something, whatever
the client on the far side of that process sends.

A connection that once said `read` stays read-only: a later request on it cannot lift
that, with or without a role of its own. The mark rides on each request (not only on the
connection) so it survives a fresh connection, and a standby's forwarding of each request
to the leader on a connection of its own.

Allowed to read: an allowlist, so an op added later is refused to a read session until
someone decides otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from watchkeeper.core.control_protocol import RequestError

Role = Literal["read", "operate"]
ROLES: tuple[Role, ...] = ("read", "operate")
READ_OPS = frozenset({"status", "jobs", "history", "subscribe"})


def session_role(current: Role, request: dict[str, Any]) -> Role:
    """The connection's role after `request`: lowered to read by a request that says so,
    never raised. RequestError for a role that is not one of ROLES."""
    said = request.get("role")
    if said is None:
        return current
    if said not in ROLES:
        raise RequestError(f"role must be one of: {', '.join(ROLES)}")
    return "read" if said == "read" or current == "read" else "operate"


def check(role: Role, request: dict[str, Any]) -> None:
    """RequestError when a read session asks for what only an operator may do."""
    if role != "read":
        return
    op = request["op"]
    if op in READ_OPS or (op == "resume" and request.get("preview") is True):
        return
    raise RequestError(f"read-only session: {op} needs an operate role")
