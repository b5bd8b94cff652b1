"""Safety at the edge: one ASGI guard in front of every route, socket.io's included, decides who gets in.

In order, for each HTTP request and websocket handshake:

1. The Host header must name this server: the bound address, `localhost`, `127.0.0.1` or `[::1]` on its port, or
   an `allowed_hosts` entry. A page on a name that an attacker rebinds to 127.0.0.1 sends its own name (421).
2. A browser's `Origin` must be the server's own or one in `allow_origins`: a page elsewhere can neither read the
   API nor open the event stream (403). Without an `Origin`, a request that changes something and that the
   browser marks `Sec-Fetch-Site: cross-site` is refused too (403); clients that are no browser send neither.
   An allowed foreign origin gets CORS answers, preflights included, for the API and socket.io alike.
3. With tokens on (`auth_tokens` in the settings, or any made with `nodeloom tokens create`), every path but the
   open ones and the web UI's files (`web_ui.py`) needs `Authorization: Bearer <token>` (401, one answer for a
   missing and a wrong token). socket.io checks its token at its `connect`, where it may also come in the auth
   payload (`{"token": ...}`).

socket.io's own CORS handling is off (`cors_allowed_origins=[]` in `sockets.py`): this guard does it, once.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodeloom.app.api.sockets import SOCKET_PATH
from nodeloom.app.api.web_ui import is_ui_path
from nodeloom.app.services.auth_tokens.auth_tokens_common import hash_token

if TYPE_CHECKING:
    from nodeloom.app.services.auth_tokens.auth_tokens_base import AuthTokenStoreBase
    from nodeloom.app.services.config.config_default import NodeloomConfig

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""Paths served without a token: the health check, and the API's description (it holds no data)."""

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_REFRESH_S = 1.0
"""How old the stored tokens a request is checked against may be: a token made or revoked while the server runs
counts within this long."""

BEARER_SCHEME = "bearer"
UNAUTHORIZED = "A valid token is needed: send it as 'Authorization: Bearer <token>'"
_CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
_CORS_MAX_AGE_S = "600"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def is_loopback(host: str) -> bool:
    """Whether the address `host` can be reached from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == BEARER_SCHEME and token else None


def _host_name(host: str) -> str:
    """`host` as a Host header writes it: an IPv6 address in brackets, lowercase."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _split_host(host: str) -> tuple[str, int | None] | None:
    """A Host header's name and port (None when it has none); None when it is no host at all."""
    if host.startswith("["):
        end = host.find("]") + 1
        if end == 0 or (host[end:] and not host.startswith(":", end)):
            return None
        name, port = host[:end], host[end + 1 :] if host[end:] else None
    else:
        name, colon, port = host.rpartition(":")
        if not colon:
            name, port = host, None
    if port is None:
        return name, None
    # isascii: "²".isdigit() is true, and a Host header is read as Latin-1.
    return (name, int(port)) if port.isascii() and port.isdigit() else None


class EdgePolicy:
    """Which hosts and origins the server answers: the rules of steps 1 and 2, without the ASGI plumbing."""

    def __init__(self, bound_host: str, allowed_hosts: Iterable[str], allow_origins: Iterable[str]) -> None:
        self._names = frozenset({*LOOPBACK_NAMES, _host_name(bound_host)})
        self._allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self._origins = frozenset(origin.lower().rstrip("/") for origin in allow_origins)

    def host_refusal(self, host: str | None, scheme: str, server_port: int | None) -> str | None:
        """Why a request with this Host header is not answered, or None when it is."""
        if host is None:
            return "The request has no Host header"
        host = host.lower()
        split = _split_host(host)
        if split is not None and ("*" in self._allowed_hosts or {host, split[0]} & self._allowed_hosts):
            return None
        if split is not None and split[0] in self._names:
            port = split[1] if split[1] is not None else _DEFAULT_PORTS.get(scheme)
            if server_port is None or port == server_port:
                return None
        return f"This server does not answer to the host '{host}': add it to the allowed_hosts setting to reach it so"

    def is_same_origin(self, origin: str, host: str, scheme: str) -> bool:
        web_scheme = "https" if scheme in ("https", "wss") else "http"
        return origin.lower() == f"{web_scheme}://{host.lower()}"

    def origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
        return origin.lower() in self._origins or self.is_same_origin(origin, host, scheme)


class TokenVerifier:
    """Step 3's question: are tokens on, and is this one of them?

    A presented token is hashed and compared by hash: with each configured one in constant time, and with the
    stored ones (`nodeloom tokens create`) by a set lookup, which tells nothing about a token a client does not
    hold. The stored hashes are read again, off the event loop, when they are older than `refresh_s`.
    """

    def __init__(
        self, configured: Iterable[str], store: AuthTokenStoreBase, refresh_s: float = TOKEN_REFRESH_S
    ) -> None:
        self._configured = [hash_token(token) for token in configured]
        self._store = store
        self._refresh_s = refresh_s
        self._stored: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = anyio.Lock()

    async def _stored_hashes(self) -> frozenset[str]:
        if time.monotonic() - self._read_at >= self._refresh_s:
            async with self._lock:
                started = time.monotonic()
                if started - self._read_at >= self._refresh_s:
                    self._stored = await run_in_threadpool(self._store.token_hashes)
                    self._read_at = started
        return self._stored

    async def enabled(self) -> bool:
        return bool(self._configured or await self._stored_hashes())

    async def accepts(self, token: str | None) -> bool:
        """True for one of the tokens, and for anything while there are none."""
        stored = await self._stored_hashes()
        if not self._configured and not stored:
            return True
        if token is None:
            return False
        digest = hash_token(token)
        configured = False
        for candidate in self._configured:
            configured |= hmac.compare_digest(candidate, digest)
        return configured or digest in stored

    async def accepts_socket(self, environ: Mapping[str, Any], auth: object) -> bool:
        """For socket.io's `connect`: the token from the handshake's Authorization header or the auth payload."""
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
        if token is None and isinstance(auth, dict) and isinstance(auth.get("token"), str):
            token = auth["token"]
        return await self.accepts(token)


class EdgeGuard:
    """The pure ASGI app in front of `app` that applies the three steps; see the module's docstring.

    A request it lets through reaches `app` with the original `receive` and `send`, unless a foreign origin is
    allowed: then `send` adds the CORS headers to the response's start. Nothing is added per websocket frame.
    """

    def __init__(self, app: ASGIApp, config: NodeloomConfig, token_store: AuthTokenStoreBase) -> None:
        self._app = app
        self._host = config.host
        self._policy = EdgePolicy(config.host, config.allowed_hosts, config.allow_origins)
        self.tokens = TokenVerifier((token.get_secret_value() for token in config.auth_tokens), token_store)

    async def warn_if_exposed(self) -> None:
        """Logs a warning when the server is bound beyond this machine and any client may use it."""
        if not is_loopback(self._host) and not await self.tokens.enabled():
            logger.warning(
                "nodeloom is bound to %s, reachable from other machines, without tokens: anyone who can reach it "
                "can use it. Create a token with `nodeloom tokens create NAME`, or set auth_tokens",
                self._host,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = _single(headers, "host")
        server = scope.get("server")
        refusal = self._policy.host_refusal(host, scope["scheme"], server[1] if server else None)
        if refusal is not None:
            await _refuse(scope, receive, send, 421, refusal)
            return
        assert host is not None, "a request without a Host header was refused"
        method = scope.get("method", "GET")
        origin = _single(headers, "origin")
        if origin is not None:
            if not self._policy.origin_allowed(origin, host, scope["scheme"]):
                reason = f"Requests from web pages at {origin} are refused: add it to the allow_origins setting"
                await _refuse(scope, receive, send, 403, reason)
                return
            if scope["type"] == "http" and not self._policy.is_same_origin(origin, host, scope["scheme"]):
                send = _with_cors(send, origin)
                if method == "OPTIONS" and "access-control-request-method" in headers:
                    await _preflight(headers)(scope, receive, send)
                    return
        elif method not in SAFE_METHODS and headers.get("sec-fetch-site") == "cross-site":
            reason = "A request that another site's page sent may not change anything here"
            await _refuse(scope, receive, send, 403, reason)
            return
        if _needs_token(scope["path"]) and not await self.tokens.accepts(bearer_token(headers.get("authorization"))):
            await _refuse(scope, receive, send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            return
        await self._app(scope, receive, send)


def _needs_token(path: str) -> bool:
    # socket.io checks its token at its `connect`, as it may come in the auth payload. The UI's files hold no data:
    # the page loads, then asks for a token to send with its API calls.
    return path not in OPEN_PATHS and not path.startswith(SOCKET_PATH) and not is_ui_path(path)


def _single(headers: Headers, name: str) -> str | None:
    """The header's value; several are joined, which makes them no host and no origin, so they are refused."""
    values = headers.getlist(name)
    return ", ".join(values) if values else None


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        # A server that cannot answer a handshake with a status closes it: the client sees a 403.
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


def _with_cors(send: Send, origin: str) -> Send:
    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Access-Control-Allow-Origin"] = origin
            headers.add_vary_header("Origin")
        await send(message)

    return cors_send


def _preflight(headers: Headers) -> Response:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": _CORS_METHODS,
            "Access-Control-Allow-Headers": headers.get("access-control-request-headers", "Authorization"),
            "Access-Control-Max-Age": _CORS_MAX_AGE_S,
        },
    )


def document_bearer_auth(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (the OpenAPI document) saying which operations take a bearer token, so /docs can send one."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": BEARER_SCHEME,
        "description": "Needed when the server has tokens (auth_tokens, or `nodeloom tokens create`)",
    }
    for path, operations in schema.get("paths", {}).items():
        if _needs_token(path):
            for operation in operations.values():
                operation["security"] = [{BEARER_SCHEME: []}]
    return schema
