"""``rke2 etcd-snapshot save|ls|list|delete|prune`` of the stand-in, both halves.

As in RKE2 v1.31/v1.32 (k3s pkg/cli/etcdsnapshot/etcd_snapshot.go, pkg/etcd/snapshot.go,
pkg/etcd/snapshot_handler.go): the command is a client of the RUNNING server's supervisor
(``POST https://127.0.0.1:9345/db/snapshot``, user ``server`` + the token in
``server/token``); the server does the work on its own disk.
- save: ``<dir>/<name>-<node name>-<unix time>`` (name default ``on-demand``, dir default
  ``/var/lib/rancher/rke2/server/db/snapshots``); logs ``Snapshot <file name> saved.``
- ls/list: tabwriter table ``Name Location Size Created`` (Location ``file://<path>``,
  Created RFC 3339), or ``--output/-o json|yaml|table``; this node's files only.
- delete NAME...: file names (no paths); logs ``Snapshot N deleted.`` or warns
  ``Snapshot N not found.`` and still exits 0.
A stand-in snapshot file holds the server's whole copy of the cluster state (JSON).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import rke2_net
import rke2_pki
from rke2_node import log

SNAPSHOT_DIR = rke2_pki.DATA / "server" / "db" / "snapshots"
FORMAT = "rke2-standin-etcd-snapshot"
VALUE_FLAGS = {
    "name",
    "dir",
    "etcd-snapshot-dir",
    "output",
    "o",
    "etcd-server",
    "etcd-token",
    "snapshot-retention",
    "etcd-snapshot-retention",
    "node-name",
    "data-dir",
    "config",
}


class SnapshotError(Exception):
    """Printed as ``level=fatal msg="Error: …"``; the command exits 1."""


# -- server side ---------------------------------------------------------------------------------
def handle(app: Any, req: dict[str, Any]) -> tuple[int, Any]:
    """A SnapshotRequest (``operation``, ``name`` list, ``dir``) -> (HTTP status, body)."""
    folder = Path(str(req.get("dir") or SNAPSHOT_DIR))
    names = [str(n) for n in req.get("name") or []]
    op = req.get("operation")
    if op == "save":
        return 200, {
            "created": [save(app, names[0] if names and names[0] else "on-demand", folder)]
        }
    if op == "list":
        return 200, listing(app.name, folder)
    if op == "delete":
        if any(os.path.basename(n) != n or n in ("", ".", "..") for n in names):
            return 400, {"error": "invalid snapshot name: path traversal not allowed"}
        deleted = []
        for n in names:
            try:
                (folder / n).unlink()
            except FileNotFoundError:
                log("info", f"Snapshot {n} not found locally")
                continue
            deleted.append(n)
            log("info", f"Snapshot {n} deleted locally")
        return 200, {"deleted": deleted}
    if op == "prune":
        keep = int(req.get("retention") or 5)
        prefix = f"{names[0] if names and names[0] else 'on-demand'}-"
        mine = sorted((p for p in files(folder) if p.name.startswith(prefix)), key=created)
        gone = mine[: max(0, len(mine) - keep)]
        for p in gone:
            p.unlink()
        return 200, {"deleted": [p.name for p in gone]}
    return 400, {"error": "invalid snapshot operation"}


def save(app: Any, name: str, folder: Path) -> str:
    file_name = f"{name}-{app.name}-{int(time.time())}"
    path = folder / file_name
    log("info", f"Saving etcd snapshot to {path}")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    body = {"format": FORMAT, "node": app.name, "state": app.store.state}
    rke2_pki.write_private(path, json.dumps(body, indent=1))
    return file_name


def files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def created(path: Path) -> int:
    """The unix time at the end of the name (k3s listLocalSnapshots), else the file's mtime."""
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return int(path.stat().st_mtime)


def listing(node: str, folder: Path) -> dict[str, Any]:
    """An ETCDSnapshotFileList as the server returns it (k3s ListSnapshots: local files)."""
    items = []
    for p in files(folder):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created(p)))
        items.append(
            {
                "kind": "ETCDSnapshotFile",
                "apiVersion": "k3s.cattle.io/v1",
                "metadata": {
                    "name": "local-" + p.name.replace("+", "_"),
                    "creationTimestamp": None,
                },
                "spec": {"snapshotName": p.name, "nodeName": node, "location": f"file://{p}"},
                "status": {
                    "readyToUse": True,
                    "creationTime": stamp,
                    "size": str(p.stat().st_size),
                },
            }
        )
    items.sort(key=lambda i: (i["status"]["creationTime"], i["spec"]["snapshotName"]))
    # Go struct order (TypeMeta: kind, apiVersion; ListMeta; items), as json.Marshal writes it.
    return {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}


def load(path: Path) -> dict[str, Any]:
    """The cluster state in a snapshot file; ValueError if it is none."""
    body = json.loads(path.read_text())
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"{path} is not an etcd snapshot")
    state: dict[str, Any] = body["state"]
    return state


# -- command line --------------------------------------------------------------------------------
def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    words, opts, it = [], {}, iter(argv)
    for arg in it:
        if arg.startswith("-") and len(arg) > 1:
            key, eq, value = arg.lstrip("-").partition("=")
            if not eq and key in VALUE_FLAGS:
                value = next(it, "")
            opts[{"o": "output", "etcd-snapshot-dir": "dir"}.get(key, key)] = value or "true"
        else:
            words.append(arg)
    return words, opts


def call(opts: dict[str, str], req: dict[str, Any]) -> Any:
    server = opts.get("etcd-server", "https://127.0.0.1:9345").rstrip("/")
    token = opts.get("etcd-token")
    if not token:
        try:
            token = rke2_pki.TOKEN.read_text().strip()
        except OSError as exc:
            raise SnapshotError(f"open {rke2_pki.TOKEN}: no such file or directory") from exc
    password = rke2_pki.parse_token(token)[2]
    url = f"{server}/db/snapshot"
    try:
        return rke2_net.call(url, "POST", req, auth=("server", password), timeout=120)
    except rke2_net.HTTPFailure as exc:
        raise SnapshotError(f"see server log for details: {exc.body.strip()}") from exc
    except OSError as exc:
        raise SnapshotError(f'see server log for details: Post "{url}": {exc}') from exc


def main(argv: list[str]) -> int:
    """``rke2 etcd-snapshot <subcommand> [flags] [names]``."""
    words, opts = parse(argv)
    sub, args = (words[0], words[1:]) if words else ("save", [])
    req: dict[str, Any] = {"dir": opts["dir"]} if "dir" in opts else {}
    try:
        if sub == "save":
            if args:
                raise SnapshotError("this command does not take any arguments")
            req.update(operation="save", name=[opts.get("name", "on-demand")])
            for name in call(opts, req).get("created") or []:
                log("info", f"Snapshot {name} saved.")
        elif sub == "delete":
            if not args:
                raise SnapshotError("no snapshots given for removal")
            deleted = call(opts, {**req, "operation": "delete", "name": args}).get("deleted") or []
            for name in deleted:
                log("info", f"Snapshot {name} deleted.")
            for name in (n for n in args if n not in deleted):
                log("warning", f"Snapshot {name} not found.")
        elif sub in ("ls", "list"):
            fmt = opts.get("output", "")
            if fmt not in ("", "json", "yaml", "table"):
                raise SnapshotError(f"invalid output format: {fmt}")
            print_list(call(opts, {**req, "operation": "list"}), fmt)
        elif sub == "prune":
            req.update(operation="prune", name=[opts.get("name", "on-demand")])
            req["retention"] = int(opts.get("snapshot-retention", "5"))
            for name in call(opts, req).get("deleted") or []:
                log("info", f"Snapshot {name} deleted.")
        else:
            raise SnapshotError(
                f'unknown command "{sub}" for etcd-snapshot (save, ls, delete, prune)'
            )
    except SnapshotError as exc:
        log("fatal", f"Error: {exc}")
        return 1
    return 0


def print_list(body: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(body, indent=4))
        return
    if fmt == "yaml":
        sys.stdout.write("".join(yaml_lines(body, 0)))
        return
    rows = [["Name", "Location", "Size", "Created"]]
    for i in body["items"]:
        spec, status = i["spec"], i["status"]
        rows.append(
            [spec["snapshotName"], spec["location"], status["size"], status["creationTime"]]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    # Go's tabwriter (minwidth 0, padding 1, ' '): each cell but the last padded to width + 1.
    for r in rows:
        sys.stdout.write(
            "".join(c.ljust(w + 1) for c, w in zip(r[:3], widths, strict=True)) + r[3] + "\n"
        )


def yaml_scalar(value: Any) -> str:
    """A scalar as sigs.k8s.io/yaml writes it: strings that would read as another type quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    plain = text and text[0].isalpha() and ": " not in text and not text.endswith(":")
    if plain and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off"):
        return text
    return json.dumps(text)


def yaml_lines(obj: Any, indent: int) -> list[str]:
    """Block YAML with sorted keys (kubectl's YAML printer); lists not indented under keys."""
    pad, out = " " * indent, []
    for key in sorted(obj):
        value = obj[key]
        if isinstance(value, dict) and value:
            out += [f"{pad}{key}:\n", *yaml_lines(value, indent + 2)]
        elif isinstance(value, list) and value:
            out.append(f"{pad}{key}:\n")
            for item in value:
                inner = yaml_lines(item, indent + 2)
                out += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
        else:
            empty = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) else None
            out.append(f"{pad}{key}: {empty or yaml_scalar(value)}\n")
    return out
