"""Treat request bodies sent without a JSON content type as JSON.

The seed's commands use ``curl -d '{…}'``, which labels the body
``application/x-www-form-urlencoded``. This API accepts no forms, so such bodies (and bodies
with no content type at all) are read as JSON; anything that is not JSON then fails validation
with a clear 422.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_REWRITE = (b"", b"application/x-www-form-urlencoded")


class DefaultJSONBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            current = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            if current.split(b";")[0].strip().lower() in _REWRITE:
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)
