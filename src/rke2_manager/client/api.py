"""A thin, synchronous client of the HTTP API: JSON in, JSON out, problems as ApiError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from rke2_manager import __version__
from rke2_manager.client.config import Target
from rke2_manager.client.errors import ApiError, Unavailable, UsageError

#: Seconds to wait for an answer; a stream waits longer (the server sends a keep-alive every 15 s).
TIMEOUT = 60.0
STREAM_READ_TIMEOUT = 60.0


class Api:
    """Calls to one API with one token. Raises ApiError for a problem answer, Unavailable
    when the API cannot be reached."""

    def __init__(self, target: Target, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": f"rke2-manager-cli/{__version__}", "Accept": "application/json"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self.target = target
        self.http = httpx.Client(
            base_url=target.url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The decoded JSON body of a 2xx answer (None for 204)."""
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, params=query, json=json)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the API at {self.target.url}: {exc}") from None
        return decode(response)

    def text(self, path: str) -> str:
        """The body of a 2xx answer that is not JSON (a kubeconfig)."""
        try:
            response = self.http.get(path)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the API at {self.target.url}: {exc}") from None
        if response.status_code >= 400:
            decode(response)
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, params=params, json=json)

    @contextmanager
    def stream(self, path: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """A streaming GET; raises ApiError for a problem answer before the stream."""
        timeout = httpx.Timeout(TIMEOUT, read=STREAM_READ_TIMEOUT)
        with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code >= 300:
                response.read()
                decode(response)
            yield response

    def cluster_id(self, ref: str) -> int:
        """The id of the cluster named or numbered ``ref`` (a name wins over a number)."""
        clusters = self.get("/api/clusters")
        for cluster in clusters:
            if cluster["name"] == ref:
                return int(cluster["id"])
        if ref.isdigit() and any(c["id"] == int(ref) for c in clusters):
            return int(ref)
        raise ApiError(404, {"detail": f"Cluster '{ref}' not found"})


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def decode(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; ApiError (with the problem's detail) otherwise."""
    if response.status_code == 204:
        return None
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if response.status_code >= 400:
        problem = body if isinstance(body, dict) else {}
        if not problem.get("detail"):
            text = response.text.strip()[:200]
            problem = {**problem, "detail": f"HTTP {response.status_code}: {text or 'no detail'}"}
        raise ApiError(response.status_code, problem)
    if body is None and response.content:
        raise UsageError(f"the API answered {response.request.url.path} with something not JSON")
    return body
