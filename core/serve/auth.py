"""Who may use `watchkeeper serve`: a token on every route but /healthz, as
`Authorization: Bearer <token>` or the cookie /login sets; the role it gives; and the
Origin check for the WebSocket upgrade and for requests that change something."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from watchkeeper.core.control_roles import Role
from watchkeeper.core.serve.tokens import Token, TokenStore

COOKIE = "wk_token"
OPEN_PATHS = frozenset({"/healthz", "/login"})
TOKEN_KEY: web.RequestKey[Token] = web.RequestKey("token", Token)
ROLE_KEY: web.RequestKey[str] = web.RequestKey("role", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def unauthorized(why: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=f'{{"ok": false, "error": "{why}"}}\n',
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="watchkeeper"'},
    )


def same_origin(request: web.Request) -> bool:
    """No Origin (not a browser), or one naming this server's own host and port."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def middleware(store: TokenStore, read_only: bool) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        secret = presented(request)
        if secret is None:
            raise unauthorized("a token is needed: Authorization: Bearer, or /login?token=")
        token = store.check(secret)
        if token is None:
            raise unauthorized("unknown or revoked token")
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            raise web.HTTPForbidden(text="foreign Origin\n")
        request[TOKEN_KEY] = token
        request[ROLE_KEY] = role_of(token, read_only)
        return await handler(request)

    return check


def role_of(token: Token, read_only: bool) -> Role:
    return "read" if read_only else token.role


def secure_request(request: web.Request) -> bool:
    """Behind a TLS proxy the connection to us is plain: the proxy says it was https."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def login(request: web.Request) -> web.StreamResponse:
    """GET /login?token=...: the token in an HttpOnly, SameSite=Strict cookie, then `/`
    (or `next`, a path of this server)."""
    store: TokenStore = request.app[STORE_KEY]
    secret = request.query.get("token", "")
    if not secret or store.check(secret) is None:
        raise unauthorized("unknown or revoked token")
    target = request.query.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=secure_request(request),
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    return response


STORE_KEY: web.AppKey[TokenStore] = web.AppKey("tokens", TokenStore)
