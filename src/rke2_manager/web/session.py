"""How a browser presents its API token: an HttpOnly cookie, turned into a bearer header.

The dashboard's login form stores the token in the cookie ``rke2m_token`` (HttpOnly, so page
scripts never see it; SameSite=Strict, so other sites' pages never send it; Secure over HTTPS).
:class:`BrowserSession` turns that cookie into ``Authorization: Bearer <token>`` before routing,
so pages and the JSON API check roles exactly as they do for curl and the CLI.

**CSRF.** A cookie rides along with every request the browser makes, so for a mutating request
the cookie counts only when the request also carries ``X-CSRF-Token`` with the value the
dashboard's pages embed (an HMAC of the token: another site can neither read the page nor
compute it, and a cross-site form cannot set headers). Without it the request goes on with no
credentials and is refused as unauthenticated. The Origin/Sec-Fetch-Site guards
(``api/guards.py``) refuse cross-site mutating requests before this, as a second wall.
An explicit ``Authorization`` header always wins over the cookie. Tokens never go in URLs.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "rke2m_token"
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN = 512  # far above a real token; a longer cookie is ignored, never parsed further
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_for(token: str) -> str:
    """The CSRF value that goes with ``token`` (pages embed it; mutating requests echo it)."""
    return hmac.new(token.encode(), b"rke2m-dashboard-csrf", hashlib.sha256).hexdigest()


def cookie_token(raw_cookie_header: str | None) -> str | None:
    """The token in a ``Cookie`` header, or None (absent, empty, oversized or malformed)."""
    if not raw_cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw_cookie_header)
    except Exception:  # a malformed Cookie header is the sender's problem: no session
        return None
    morsel = jar.get(COOKIE)
    value = morsel.value.strip() if morsel is not None else ""
    if not value or len(value) > MAX_TOKEN or not value.isascii() or not value.isprintable():
        return None
    return value


def request_token(conn: HTTPConnection) -> str | None:
    """The dashboard session's token of this request (for pages that embed the CSRF value)."""
    return cookie_token(conn.headers.get("cookie"))


def set_session(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")


def clear_session(response: Response, secure: bool) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure, path="/")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BrowserSession:
    """ASGI middleware: the session cookie becomes the request's bearer token (see above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _header(scope, b"authorization") is None:
            token = cookie_token(_header(scope, b"cookie"))
            if token is not None and self._may_use(scope, token):
                headers = [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]
                scope = dict(scope, headers=headers)
        await self.app(scope, receive, send)

    @staticmethod
    def _may_use(scope: Scope, token: str) -> bool:
        if scope["method"] in _SAFE:
            return True
        sent = _header(scope, CSRF_HEADER.encode()) or ""
        return hmac.compare_digest(sent.encode(), csrf_for(token).encode())
