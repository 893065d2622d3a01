"""ConfigMaps in the stand-in API server, kept in the replicated cluster state (so a snapshot
holds them and a restore brings them back), under ``state["configmaps"]["<ns>/<name>"]``.

Routes (Kubernetes core/v1): ``GET|POST /api/v1/namespaces/<ns>/configmaps``,
``GET|DELETE /api/v1/namespaces/<ns>/configmaps/<name>``. Writes need quorum.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rke2_cluster import NoQuorum

#: The namespaces every RKE2 cluster has (the stand-in has no others).
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return code, body


def render(ns: str, name: str, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": rec["uid"],
            "resourceVersion": str(rec["rv"]),
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec["created"])),
        },
        "data": dict(rec["data"]),
    }


def serve(app: Any, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
    """parts: the path after /api/v1/namespaces/, split on '/' (``[ns, "configmaps", name?]``)."""
    if len(parts) not in (2, 3) or parts[1] != "configmaps":
        return status(404, "NotFound", "the server could not find the requested resource")
    ns = parts[0]
    name = parts[2] if len(parts) == 3 else None
    if ns not in NAMESPACES:
        return status(404, "NotFound", f'namespaces "{ns}" not found')
    maps: dict[str, Any] = app.store.state.get("configmaps", {})
    if method == "GET" and name is None:
        items = [
            render(ns, k.split("/", 1)[1], v)
            for k, v in sorted(maps.items())
            if k.startswith(ns + "/")
        ]
        return 200, {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {}, "items": items}
    if method == "GET":
        rec = maps.get(f"{ns}/{name}")
        if rec is None:
            return status(404, "NotFound", f'configmaps "{name}" not found')
        return 200, render(ns, str(name), rec)
    if method == "POST" and name is None:
        return create(app, ns, body if isinstance(body, dict) else {})
    if method == "DELETE" and name is not None:
        return delete(app, ns, name)
    return status(405, "MethodNotAllowed", f"the server does not allow this method: {method}")


def create(app: Any, ns: str, obj: dict[str, Any]) -> tuple[int, Any]:
    name = str((obj.get("metadata") or {}).get("name") or "")
    data = obj.get("data") or {}
    if not name or not isinstance(data, dict):
        return status(422, "Invalid", "ConfigMap is invalid: metadata.name: Required value")
    key = f"{ns}/{name}"

    def add(state: dict[str, Any]) -> dict[str, Any]:
        maps = state.setdefault("configmaps", {})
        if key in maps:
            raise FileExistsError(key)
        maps[key] = {
            "data": {str(k): str(v) for k, v in data.items()},
            "created": time.time(),
            "uid": os.urandom(16).hex(),
            "rv": state["version"] + 1,
        }
        return dict(maps[key])

    try:
        rec = app.store.change(add)
    except FileExistsError:
        return status(409, "AlreadyExists", f'configmaps "{name}" already exists')
    except NoQuorum as exc:
        return status(500, "InternalError", str(exc))
    return 201, render(ns, name, rec)


def delete(app: Any, ns: str, name: str) -> tuple[int, Any]:
    def drop(state: dict[str, Any]) -> None:
        del state.setdefault("configmaps", {})[f"{ns}/{name}"]

    try:
        app.store.change(drop)
    except KeyError:
        return status(404, "NotFound", f'configmaps "{name}" not found')
    except NoQuorum as exc:
        return status(500, "InternalError", str(exc))
    return 200, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Success",
        "details": {"name": name, "kind": "configmaps"},
    }
