"""rke2-manager's etcd member steps on an RKE2 server, run inside a fenced raw step as

    "$(cat /var/lib/rke2-manager/python)" -I -S -c "<this file>" COMMAND ARGS...

    absent PEER_URL TIMEOUT POLL   wait (bounded) until no etcd member has PEER_URL
    remove PEER_URL                remove the member with PEER_URL (found by it); one already
                                   gone (e.g. removed by RKE2's own controller) is fine

It asks RKE2's etcd through its JSON gateway on https://127.0.0.1:2379 with RKE2's etcd client
certificate (tls/etcd/server-client.crt, trusted through server-ca.crt). Nothing is skipped:
when etcd cannot be asked (a certificate missing, no answer, an error answer) it says why as
its last line of stderr ("cannot check the etcd members: …") and exits 1.

Runs on the node's Python (3.8 or newer, as Ansible's modules need), stdlib only.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

TLS = "/var/lib/rancher/rke2/server/tls/etcd"
ENDPOINT = "https://127.0.0.1:2379"
CANNOT = "cannot check the etcd members"


def fail(message: str) -> NoReturn:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def context() -> ssl.SSLContext:
    names = ("server-ca.crt", "server-client.crt", "server-client.key")
    files = [os.path.join(TLS, name) for name in names]
    for path in files:
        if not os.path.isfile(path):
            fail(f"{CANNOT}: {path} is missing on this server")
    ctx = ssl.create_default_context(cafile=files[0])
    ctx.load_cert_chain(files[1], files[2])
    return ctx


def call(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        ENDPOINT + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context()) as answer:
            return 200, dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        try:
            detail = dict(json.load(exc))
        except ValueError:
            detail = {}
        return exc.code, detail
    except (OSError, ValueError) as exc:
        fail(f"{CANNOT}: {ENDPOINT}{path} did not answer: {exc}")


def members() -> list[dict[str, Any]]:
    status, answer = call("/v3/cluster/member/list", {})
    found = answer.get("members")
    if status != 200 or not isinstance(found, list):
        said = str(answer.get("message") or answer)[:200]
        fail(f"{CANNOT}: member/list answered {status} {said}")
    return [m for m in found if isinstance(m, dict)]


def holding(peer: str) -> list[dict[str, Any]]:
    return [m for m in members() if peer in (m.get("peerURLs") or [])]


def absent(peer: str, timeout: int, poll: float) -> None:
    end = time.monotonic() + timeout
    while True:
        found = holding(peer)
        if not found:
            print(f"no etcd member has {peer}")
            return
        if time.monotonic() >= end:
            name = found[0].get("name")
            fail(f"timed out after {timeout}s waiting until etcd member {name} ({peer}) is gone")
        time.sleep(poll)


def remove(peer: str) -> None:
    found = holding(peer)
    if not found:
        print(f"no etcd member has {peer}: already gone")
        return
    member_id, name = str(found[0].get("ID")), found[0].get("name")
    status, answer = call("/v3/cluster/member/remove", {"ID": member_id})
    if status == 404:  # removed meanwhile (RKE2's controller): what was asked
        print(f"etcd member {member_id} ({name}) already gone")
        return
    if status != 200:
        said = str(answer.get("message") or answer)[:200]
        fail(f"etcd refused to remove member {member_id} ({name}): {status} {said}")
    print(f"removed etcd member {member_id} ({name})")


def main(argv: list[str]) -> None:
    if len(argv) == 4 and argv[0] == "absent":
        absent(argv[1], int(argv[2]), float(argv[3]))
    elif len(argv) == 2 and argv[0] == "remove":
        remove(argv[1])
    else:
        fail("usage: rke2m-etcd absent PEER_URL TIMEOUT POLL | remove PEER_URL")


main(sys.argv[1:])
