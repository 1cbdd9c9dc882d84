"""The guard in front of every route: Host allowlist, token, Origin checks.

One ASGI middleware, so pages, the JSON API, file downloads and WebSockets pass the same
checks (Starlette and uvicorn check no WebSocket Origin themselves):

- Host: a DNS rebinding page reaches us under its own domain name, so the Host header
  must name this server: a loopback name, an IP literal when bound off loopback, this
  machine's hostname, or a name allowed explicitly.
- Token: off loopback every request needs it, as `Authorization: Bearer`, the
  `distill_token_PORT` cookie, or once as `?token=` (which sets the cookie, like Jupyter).
  Browsers keep cookies per host, not per port: the port in the name keeps two servers
  on one machine from overwriting each other's token.
- Body: every request body is capped as it streams (BodyTooLarge, 413), at its
  Content-Length before a byte is read; a route may cap it tighter (a JSON API at
  MAX_JSON_BODY_BYTES). A 300 MiB JSON POST was read whole before.
- Origin: a WebSocket handshake and every state-changing request from a browser carries
  an Origin; it must be this server's own. Clients that are not browsers (the CLI) send
  none and are let through on the token alone. `Origin: null` and a cross-site
  `Sec-Fetch-Site` are refused.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from distill.server.inputs import MAX_BODY_BYTES, limited, too_large
from distill.server.settings import ServerSettings, is_loopback

TOKEN_COOKIE_PREFIX = "distill_token_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POLICY_VIOLATION = 1008  # WebSocket close code: refused by policy


class Guard:
    """Refuses requests that fail the Host, token or Origin checks, before any route runs."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.loopback_only = is_loopback(settings.host)
        names = {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.machine_names = frozenset() if self.loopback_only else frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self.check(scope, headers)
        if problem is not None:
            await self.refuse(scope, receive, send, *problem)
            return
        if (
            self.settings.token
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and _query_token(scope)
        ):
            # A token in the URL becomes a cookie, and leaves the address bar.
            response = RedirectResponse(_without_token(scope), status_code=303)
            response.set_cookie(
                token_cookie(scope), self.settings.token, httponly=True, samesite="strict",
                path="/",
            )  # fmt: skip
            await response(scope, receive, send)
            return
        if scope["type"] == "http":
            limit = self.body_limit(headers)
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:  # refused before a byte is read
                await self.refuse(scope, receive, send, 413, too_large(limit, "request body"))
                return
            receive = limited(receive, limit)  # and as it streams, without a length
        await self.app(scope, receive, send)

    def body_limit(self, headers: Headers) -> int:
        """The most any request body may carry: an upload's limit for a multipart form
        (its route applies its own, tighter one), MAX_BODY_BYTES for anything else."""
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return max(self.settings.max_upload_bytes, self.settings.max_model_upload_bytes)
        return MAX_BODY_BYTES

    def check(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        """(status, message) for a refused request, None for an allowed one."""
        if not self.host_allowed(headers.get("host", "")):
            return 400, "unknown Host header: this distill server does not answer to that name"
        if self.settings.token and not self.token_ok(scope, headers):
            return 401, (
                "this distill server needs its token: open the address `distill serve` "
                "printed (it ends in ?token=...), or send Authorization: Bearer TOKEN"
            )
        state_changing = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if state_changing and not self.origin_ok(headers):
            return 403, "cross-origin request refused (the Origin is not this server)"
        return None

    def host_allowed(self, host_header: str) -> bool:
        host = _hostname(host_header)
        if not host:
            return False
        if host in self.settings.allowed_hosts or is_loopback(host):
            return True
        if self.loopback_only:
            return False
        if host in self.machine_names:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True  # an IP literal cannot be rebound by DNS

    def token_ok(self, scope: Scope, headers: Headers) -> bool:
        expected = self.settings.token or ""
        supplied = []
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            supplied.append(authorization[7:].strip())
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        name = token_cookie(scope)
        if name in cookie:
            supplied.append(cookie[name].value)
        query = _query_token(scope)
        if query:
            supplied.append(query)
        return any(secrets.compare_digest(s.encode(), expected.encode()) for s in supplied)

    def origin_ok(self, headers: Headers) -> bool:
        if headers.get("sec-fetch-site") == "cross-site":
            return False
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser: the Host and token checks are what apply
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # includes "null" (sandboxed frames, file: pages)
        return parts.netloc.lower() == headers.get("host", "").lower()

    async def refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": message})
            return
        response: Response = PlainTextResponse(message, status_code=status)
        await response(scope, receive, send)


def token_cookie(scope: Scope) -> str:
    """The name of this server's token cookie: it carries the port the server listens on
    (the socket's, so also right for a server started on port 0)."""
    server = scope.get("server") or (None, None)
    return f"{TOKEN_COOKIE_PREFIX}{server[1] or 'default'}"


def _hostname(host_header: str) -> str:
    """The name in a Host header, lower case, without port or IPv6 brackets; "" for a
    header that is not exactly a name and an optional port (`127.0.0.1:1@evil.example`,
    which a looser split read as 127.0.0.1)."""
    match = _HOST.fullmatch(host_header.strip().lower())
    if match is None:
        return ""
    return match["v6"] or match["name"]


_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::[0-9]{1,5})?")


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _without_token(scope: Scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    query.pop("token", None)
    rest = urlencode(query, doseq=True)
    # One leading slash: "//evil.example/" is another site to a browser (an open redirect).
    # The path already holds the root path (ASGI: uvicorn's --root-path, a Starlette Mount).
    path = "/" + scope["path"].lstrip("/\\")
    return path + (f"?{rest}" if rest else "")
