"""Kubeconfig loading and API calls of the stand-in kubectl."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "v0.0.0"


class KubectlError(Exception):
    """Printed as is; kubectl exits 1."""


class NotFound(KubectlError):
    pass


def seconds(value: str) -> float:
    """'30s', '2m', '1h', '90' -> seconds."""
    total, num = 0.0, ""
    for ch in value.strip():
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num or 0) * {"s": 1, "m": 60, "h": 3600}.get(ch, 1)
            num = ""
    return total + float(num or 0)


def kubeconfig_fields(text: str) -> dict[str, str]:
    """First value of each field kubectl needs (the files RKE2 writes have one cluster/user)."""
    out: dict[str, str] = {}
    for key in (
        "server",
        "certificate-authority-data",
        "client-certificate-data",
        "client-key-data",
        "certificate-authority",
        "client-certificate",
        "client-key",
    ):
        m = re.search(rf"^\s*{re.escape(key)}:\s*[\"']?([^\"'\s]+)", text, re.M)
        if m:
            out[key] = m.group(1)
    return out


class Api:
    """Client for the API server named in the kubeconfig."""

    def __init__(self, opts: dict[str, str]) -> None:
        path = opts.get("kubeconfig") or os.environ.get("KUBECONFIG", "").split(":")[0]
        path = path or str(Path.home() / ".kube" / "config")
        try:
            fields = kubeconfig_fields(Path(path).read_text())
        except OSError:
            fields = {"server": "http://localhost:8080"}
        self.server = opts.get("server") or fields.get("server", "http://localhost:8080")
        self.fields = fields
        self.timeout = seconds(opts.get("request-timeout", "0") or "0") or 30.0

    def _context(self, tmp: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        files: dict[str, str] = {}
        for key in ("certificate-authority", "client-certificate", "client-key"):
            if key + "-data" in self.fields:
                f = tmp / key
                f.write_bytes(base64.b64decode(self.fields[key + "-data"]))
                f.chmod(0o600)
                files[key] = str(f)
            elif key in self.fields:
                files[key] = self.fields[key]
        if "certificate-authority" in files:
            ctx.load_verify_locations(files["certificate-authority"])
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if "client-certificate" in files:
            ctx.load_cert_chain(files["client-certificate"], files.get("client-key"))
        return ctx

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url = urlsplit(self.server)
        host, port = url.hostname or "localhost", url.port or 443
        refused = (
            f"The connection to the server {host}:{port} was refused - "
            "did you specify the right host or port?"
        )
        if url.scheme != "https":
            raise KubectlError(refused)
        with tempfile.TemporaryDirectory(prefix="kubectl-") as tmp:
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._context(Path(tmp))
            )
            try:
                headers = {"Content-Type": "application/merge-patch+json", "Accept": "*/*"}
                data = json.dumps(body).encode() if body is not None else None
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace")
            except ConnectionRefusedError as exc:
                raise KubectlError(refused) from exc
            except (OSError, ssl.SSLError) as exc:
                raise KubectlError(f"Unable to connect to the server: {exc}") from exc
            finally:
                conn.close()
        ctype = resp.getheader("Content-Type", "")
        payload = json.loads(text) if ctype.startswith("application/json") else text
        if resp.status >= 400:
            if isinstance(payload, dict):
                err = f"Error from server ({payload.get('reason')}): {payload.get('message')}"
                raise (NotFound if resp.status == 404 else KubectlError)(err)
            raise KubectlError(f"Error from server: {str(payload).strip()}")
        return payload
