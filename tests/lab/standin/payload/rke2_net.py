"""HTTP(S) plumbing of the stand-in rke2: TLS servers and a small JSON client."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TLSServer(ThreadingHTTPServer):
    """Threading HTTP server doing the TLS handshake in each request's thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, port: int, handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext | None, app: Any
    ) -> None:
        self.ctx = ctx
        self.app = app
        super().__init__(("0.0.0.0", port), handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        if self.ctx is not None:
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]

    def serve_in_thread(self) -> None:
        threading.Thread(target=self.serve_forever, daemon=True).start()


def server_context(crt: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS context presenting crt; with client_ca, clients must show a cert it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_ca))
    return ctx


def client_context(ca: Path | None) -> ssl.SSLContext:
    """Verify the peer against the cluster CA (by chain, not name); None: no verification."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(str(ca))
    return ctx


class HTTPFailure(Exception):
    """A request got an HTTP error status (status and body attached)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:200]}")
        self.status = status
        self.body = body


def call(
    url: str,
    method: str = "GET",
    body: Any = None,
    *,
    ca: Path | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 5.0,
) -> Any:
    """JSON (or text) request to ``https://host:port/path``; HTTPFailure on status >= 400."""
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port or 443, timeout=timeout, context=client_context(ca)
    )
    headers = {"Content-Type": "application/json"}
    if auth:
        cred = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {cred}"
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, parts.path or "/", body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
    finally:
        conn.close()
    if resp.status >= 400:
        raise HTTPFailure(resp.status, text)
    if resp.getheader("Content-Type", "").startswith("application/json"):
        return json.loads(text)
    return text


def basic_auth(header: str | None) -> tuple[str, str] | None:
    """Decode an ``Authorization: Basic`` header."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def local_ip(towards: str | None = None) -> str:
    """This host's address on the route towards a peer (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((towards or "192.0.2.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        socket.create_connection((host, port), timeout).close()
        return True
    except OSError:
        return False
