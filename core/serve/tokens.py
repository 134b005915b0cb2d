"""Access tokens for `watchkeeper serve`, kept in Logs/tokens.toml (mode 0600).

Only a salted SHA-256 of each token is stored; the token itself is printed once by
`token add`. A token is 32 random bytes, so a fast hash is enough: there is nothing to
guess by brute force, and the server checks one on every request. The server re-reads
the file when it changes, so a revoke takes effect on the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from watchkeeper.core.atomic import write_atomic
from watchkeeper.core.control_roles import ROLES, Role
from watchkeeper.core.logsdir import make_folder

TOKENS_NAME = "tokens.toml"
PREFIX = "wk_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HEADER = (
    "# watchkeeper serve's access tokens: `watchkeeper token add|list|revoke`.\n"
    "# Only salted SHA-256 hashes are kept here; a lost token is revoked and added again.\n"
)


class TokenError(Exception):
    """A token command or the tokens file cannot be used; the message says why."""


@dataclass(frozen=True)
class Token:
    name: str
    role: Role
    created: str
    salt: str
    sha256: str

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.sha256, digest(self.salt, secret))


def digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()


def tokens_path(vault: Path) -> Path:
    return vault / "Logs" / TOKENS_NAME


def read_tokens(path: Path) -> dict[str, Token]:
    """The tokens in `path` (none when it does not exist); TokenError naming the file and
    the entry when it cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TokenError(f"cannot read {path}: {error}") from None
    table = data.get("tokens", {})
    if not isinstance(table, dict):
        raise TokenError(f"{path}: [tokens] must be a table")
    found: dict[str, Token] = {}
    for name, entry in table.items():
        try:
            found[name] = _token(name, entry)
        except (KeyError, TypeError, ValueError) as error:
            raise TokenError(f"{path}: [tokens.{name}]: {error}") from None
    return found


def _token(name: str, entry: object) -> Token:
    if not isinstance(entry, dict):
        raise TypeError("must be a table")
    role, salt, hashed = entry["role"], entry["salt"], entry["sha256"]
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not isinstance(salt, str) or not isinstance(hashed, str):
        raise TypeError("salt and sha256 must be strings")
    bytes.fromhex(salt)
    if len(hashed) != 64:
        raise ValueError("sha256 must be 64 hex digits")
    return Token(name, role, str(entry.get("created", "")), salt, hashed)


def _write(path: Path, tokens: dict[str, Token]) -> None:
    table = {
        token.name: {
            "role": token.role,
            "created": token.created,
            "salt": token.salt,
            "sha256": token.sha256,
        }
        for token in tokens.values()
    }
    write_atomic(path, HEADER + tomli_w.dumps({"tokens": table}), 0o600)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One change at a time: two `token add` at once must not lose either."""
    make_folder(path.parent)
    fd = os.open(path.with_name(".tokens.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_token(path: Path, name: str, role: str) -> str:
    """Make a token called `name` with `role`; returns the secret (shown once)."""
    if not NAME.fullmatch(name):
        raise TokenError(
            f"token name {name!r}: letters, digits, '_', '.', '-' (up to 64, a letter or "
            "digit first)"
        )
    if role not in ROLES:
        raise TokenError(f"--role must be one of: {', '.join(ROLES)}")
    with _locked(path):
        tokens = read_tokens(path)
        if name in tokens:
            raise TokenError(f"a token named {name!r} exists: revoke it first")
        secret = PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        tokens[name] = Token(name, role, created, salt, digest(salt, secret))
        _write(path, tokens)
    return secret


def revoke_token(path: Path, name: str) -> None:
    with _locked(path):
        tokens = read_tokens(path)
        if name not in tokens:
            known = ", ".join(sorted(tokens)) or "none"
            raise TokenError(f"no token named {name!r} in {path}; tokens: {known}")
        del tokens[name]
        _write(path, tokens)


class TokenStore:
    """The server's view of the tokens file, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._tokens: dict[str, Token] = {}
        self.problem: str | None = None  # why the file could not be read: nobody gets in

    def _fresh(self) -> dict[str, Token]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._tokens, self.problem = None, {}, None
            return self._tokens
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            try:
                self._tokens, self.problem = read_tokens(self.path), None
            except TokenError as error:
                self._tokens, self.problem = {}, str(error)
            self._seen = seen
            if stat.S_IMODE(info.st_mode) != 0o600 and info.st_uid == os.geteuid():
                # Logs/ opened to a group (log_mode) must not open the hashes with it.
                with contextlib.suppress(OSError):
                    os.chmod(self.path, 0o600)
        return self._tokens

    def check(self, secret: str) -> Token | None:
        """The token `secret` is, or None."""
        if not secret.startswith(PREFIX):
            return None
        for token in self._fresh().values():
            if token.matches(secret):
                return token
        return None

    def __len__(self) -> int:
        return len(self._fresh())
