"""Request guards that run before routing: body size and nesting, browsers, the Host header.

- **Body limit**: a body larger than ``RKE2M_MAX_BODY`` gets 413 before more of it is read
  (at once from ``Content-Length``, else as soon as the stream passes the limit); JSON nested
  deeper than ``MAX_DEPTH`` gets 422 before any parser sees it (deep nesting exhausts parsers).
- **Host** (DNS rebinding): every request's ``Host`` must name the service (allowed hosts).
- **Browsers** (CSRF): ``curl -d`` sends a form content type that any web page may post
  cross-site, so a mutating request that carries an ``Origin`` other than the service's own,
  or ``Sec-Fetch-Site`` other than ``same-origin``/``none``, is refused with 403. curl sends
  neither header, so scripts keep working.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rke2_manager.config import Settings

MAX_DEPTH = 32
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_WILDCARDS = {"0.0.0.0", "::", ""}


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def nesting_depth(body: bytes) -> int:
    """How deep JSON arrays and objects nest in ``body`` (strings skipped; no parsing)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b'""', body)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The names a ``Host`` header may carry: configured, or the listen address and loopback
    names (plus this machine's names when listening on every address)."""
    if settings.allowed_hosts:
        return frozenset(h.lower().strip("[]") for h in settings.allowed_hosts)
    names = {"localhost", "127.0.0.1", "::1", settings.host.lower().strip("[]")}
    if settings.host in _WILDCARDS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names - _WILDCARDS)


def _hostname(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class RequestGuards:
    """ASGI middleware applying the guards above to every HTTP request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body
        self.hosts = allowed_hosts(settings)
        self.any_host = "*" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        host = _header(headers, b"host") or ""
        if not self.any_host and _hostname(host) not in self.hosts:
            await _problem(
                send,
                400,
                "Bad Request",
                f"Host '{host[:100]}' is not a name of this service (RKE2M_ALLOWED_HOSTS)",
            )
            return
        if scope["method"] in MUTATING:
            refusal = self._cross_site(scope, host)
            if refusal:
                await _problem(send, 403, "Forbidden", refusal)
                return
        length = _header(headers, b"content-length")
        if length is not None:
            if not length.isdigit():
                await _problem(send, 400, "Bad Request", "Content-Length is not a number")
                return
            if int(length) > self.max_body:
                await self._too_large(send)
                return
        if scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(send)
            return
        if nesting_depth(body) > MAX_DEPTH:
            await _problem(
                send,
                422,
                "Unprocessable Content",
                f"request body nests deeper than {MAX_DEPTH} levels",
            )
            return
        await self.app(scope, _replay(body, receive), send)

    def _cross_site(self, scope: Scope, host: str) -> str | None:
        headers = scope["headers"]
        site = _header(headers, b"sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return f"Cross-site request refused (Sec-Fetch-Site: {site[:40]})"
        origin = _header(headers, b"origin")
        if origin is None:
            return None
        own = f"{scope.get('scheme', 'http')}://{host}".lower()
        if origin.lower().rstrip("/") != own:
            return f"Cross-origin request refused: Origin '{origin[:100]}' is not this service"
        return None

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _problem(
            send,
            413,
            "Content Too Large",
            f"request body is larger than {self.max_body} bytes (RKE2M_MAX_BODY)",
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when the client goes

    return replay
