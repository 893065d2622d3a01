"""rke2-manager's etcd gate on an RKE2 server: wait, bounded, until every etcd member is started
and healthy. Run by the upgrade playbook inside a fenced raw step, with the node's Python:

    python3 -c "<this file>" TIMEOUT POLL_INTERVAL

It asks etcd's JSON gateway on 127.0.0.1:2379 with RKE2's etcd client certificate for the
member list, then each member's ``/health`` at its client URL. A member without a name has not
started. Prints one line per member when all are healthy (exit 0); otherwise the last problem
on stderr (exit 1). A learner (a joining member not promoted yet) is not healthy yet. If the
check cannot be made at all (no client certificate: not an RKE2 server with embedded etcd), it
says so at once (exit 2): never skipped.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from typing import Any

TLS = "/var/lib/rancher/rke2/server/tls/etcd"
FILES = {"ca": "server-ca.crt", "cert": "server-client.crt", "key": "server-client.key"}
LOCAL = "https://127.0.0.1:2379"


def context() -> ssl.SSLContext:
    paths = {k: os.path.join(TLS, v) for k, v in FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        sys.stderr.write(
            "cannot check etcd: {} missing (the etcd client certificate of RKE2's embedded "
            "etcd)\n".format(", ".join(missing))
        )
        sys.exit(2)
    ctx = ssl.create_default_context(cafile=paths["ca"])
    # etcd's serving certificates name the node's addresses; members are dialled by the URLs
    # etcd itself lists, and the CA is RKE2's own etcd CA
    ctx.check_hostname = False
    ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx


def call(ctx: ssl.SSLContext, url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    with opener.open(request, timeout=5) as response:
        return json.loads(response.read().decode())


def problems(ctx: ssl.SSLContext) -> tuple[list[str], list[str]]:
    """What keeps the members from being all started and healthy (empty: nothing), and a
    line per member."""
    try:
        members = call(ctx, LOCAL + "/v3/cluster/member/list", {}).get("members") or []
    except Exception as exc:
        return [f"member list from {LOCAL} failed: {exc}"], []
    if not members:
        return ["etcd lists no members"], []
    found: list[str] = []
    lines: list[str] = []
    for member in members:
        name = member.get("name") or ""
        urls = member.get("clientURLs") or []
        ident = name or "member {}".format(member.get("ID", "?"))
        if not name or not urls:
            found.append(f"{ident} has not started")
            continue
        if member.get("isLearner"):
            # RKE2 joins a server as a learner and promotes it once it caught up
            found.append(f"{ident} is still a learner (not yet a voting member)")
            continue
        try:
            health = call(ctx, urls[0] + "/health")
        except Exception as exc:
            found.append(f"{ident} at {urls[0]}: health check failed: {exc}")
            continue
        if str(health.get("health")) != "true":
            reason = health.get("reason") or "no reason given"
            found.append(f"{ident} at {urls[0]} is not healthy ({reason})")
        else:
            lines.append(f"{name} {urls[0]} healthy")
    return found, lines


def main() -> int:
    timeout, interval = int(sys.argv[1]), float(sys.argv[2])
    ctx = context()
    end = time.monotonic() + timeout
    while True:
        found, lines = problems(ctx)
        if not found:
            print("\n".join(lines))
            return 0
        if time.monotonic() >= end:
            sys.stderr.write(
                "etcd not healthy after {}s: {}\n".format(timeout, "; ".join(found)[:400])
            )
            return 1
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
