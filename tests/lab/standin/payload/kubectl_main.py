"""Stand-in ``kubectl`` placed by the stand-in rke2 under /var/lib/rancher/rke2/bin.

Supports: get nodes/node [NAME] (-o wide|json|name|jsonpath=..., --no-headers, -l), get --raw,
wait --for=condition=Ready node/NAME, cordon, uncordon, drain, delete node, version,
cluster-info. Talks to the stand-in API on 6443 with the kubeconfig's client certificate.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import kubectl_client as kc
import kubectl_configmap
import kubectl_jsonpath
from kubectl_print import age, table

VALUE_FLAGS = {
    "from-literal",
    "kubeconfig",
    "output",
    "o",
    "selector",
    "l",
    "timeout",
    "for",
    "namespace",
    "n",
    "raw",
    "request-timeout",
    "grace-period",
    "context",
    "server",
    "s",
}


def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    words: list[str] = []
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg.startswith("-") and len(arg) > 1:
            key, eq, value = arg.lstrip("-").partition("=")
            if not eq and key in VALUE_FLAGS:
                value = next(it, "")
            opts[{"o": "output", "l": "selector", "n": "namespace"}.get(key, key)] = (
                value if (eq or key in VALUE_FLAGS) else "true"
            )
        else:
            words.append(arg)
    return words, opts


def matches(node: dict[str, Any], selector: str) -> bool:
    labels = node["metadata"]["labels"]
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


def status_word(node: dict[str, Any]) -> str:
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    word = "Ready" if ready and ready[0]["status"] == "True" else "NotReady"
    return word + (",SchedulingDisabled" if node["spec"].get("unschedulable") else "")


def roles(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    found = sorted(k[len(prefix) :] for k in node["metadata"]["labels"] if k.startswith(prefix))
    return ",".join(found) or "<none>"


def print_nodes(nodes: list[dict[str, Any]], single: bool, opts: dict[str, str]) -> None:
    out = opts.get("output", "")
    if out == "json":
        data = nodes[0] if single else {"apiVersion": "v1", "kind": "List", "items": nodes}
        print(json.dumps(data, indent=4))
    elif out == "name":
        print("\n".join(f"node/{n['metadata']['name']}" for n in nodes))
    elif out.startswith("jsonpath="):
        data = nodes[0] if single else {"kind": "List", "items": nodes}
        sys.stdout.write(kubectl_jsonpath.execute(out[9:].strip("'"), data))
    elif out in ("", "wide"):
        rows = [["NAME", "STATUS", "ROLES", "AGE", "VERSION"]]
        if out == "wide":
            rows[0] += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "CONTAINER-RUNTIME"]
        for n in nodes:
            row = [
                n["metadata"]["name"],
                status_word(n),
                roles(n),
                age(n["metadata"]["creationTimestamp"]),
                n["status"]["nodeInfo"]["kubeletVersion"],
            ]
            if out == "wide":
                row += [
                    n["status"]["addresses"][0]["address"],
                    "<none>",
                    n["status"]["nodeInfo"]["osImage"],
                    n["status"]["nodeInfo"]["containerRuntimeVersion"],
                ]
            rows.append(row)
        print(table(rows, opts.get("no-headers") != "true"))
    else:
        raise kc.KubectlError(
            f"error: unable to match a printer suitable for the output "
            f'format "{out}" (stand-in kubectl)'
        )


def cmd_get(api: kc.Api, words: list[str], opts: dict[str, str]) -> int:
    if "raw" in opts:
        print(api.request("GET", opts["raw"]), end="")
        return 0
    kind, names = (words[0], words[1:]) if words else ("", [])
    if "/" in kind:
        kind, names = kind.split("/", 1)[0], [kind.split("/", 1)[1], *names]
    if kind not in ("node", "nodes", "no"):
        print(
            f"No resources found in {opts.get('namespace', 'default')} namespace.", file=sys.stderr
        )
        return 0
    if names:
        nodes = [api.request("GET", f"/api/v1/nodes/{n}") for n in names]
    else:
        nodes = api.request("GET", "/api/v1/nodes")["items"]
        nodes = [n for n in nodes if matches(n, opts.get("selector", ""))]
        if not nodes:
            print("No resources found", file=sys.stderr)
            return 0
    print_nodes(nodes, len(names) == 1, opts)
    return 0


def node_names(words: list[str]) -> list[str]:
    names = [w.split("/", 1)[1] if "/" in w else w for w in words]
    return [n for n in names if n not in ("node", "nodes", "no")]


def cmd_wait(api: kc.Api, words: list[str], opts: dict[str, str]) -> int:
    cond = opts.get("for", "")
    if not cond.lower().startswith("condition="):
        raise kc.KubectlError("error: the stand-in kubectl supports --for=condition=Ready only")
    want, _, value = cond.split("=", 1)[1].partition("=")
    deadline = time.monotonic() + kc.seconds(opts.get("timeout", "30s"))
    for name in node_names(words):
        while True:
            try:
                node = api.request("GET", f"/api/v1/nodes/{name}")
                got = [c["status"] for c in node["status"]["conditions"] if c["type"] == want]
                if got and got[0].lower() == (value or "true").lower():
                    print(f"node/{name} condition met")
                    break
            except kc.KubectlError:
                pass
            if time.monotonic() > deadline:
                raise kc.KubectlError(f"error: timed out waiting for the condition on nodes/{name}")
            time.sleep(1)
    return 0


def cordon(api: kc.Api, name: str, on: bool) -> str:
    node = api.request("GET", f"/api/v1/nodes/{name}")
    verb = "cordoned" if on else "uncordoned"
    if bool(node["spec"].get("unschedulable")) == on:
        return f"node/{name} already {verb}"
    api.request("PATCH", f"/api/v1/nodes/{name}", {"spec": {"unschedulable": on}})
    return f"node/{name} {verb}"


def cmd_drain(api: kc.Api, words: list[str], opts: dict[str, str]) -> int:
    for name in node_names(words):
        print(cordon(api, name, True))
        if opts.get("ignore-daemonsets") != "true":
            raise kc.KubectlError(
                f'error: unable to drain node "{name}" due to error: cannot delete '
                f"DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
                f"kube-system/rke2-canal-{name[:5]}, continuing command..."
            )
        print(
            f"Warning: ignoring DaemonSet-managed Pods: kube-system/rke2-canal-{name[:5]}",
            file=sys.stderr,
        )
        api.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")
        print(f"node/{name} drained")
    return 0


def cmd_delete(api: kc.Api, words: list[str], opts: dict[str, str]) -> int:
    """``delete node N...``: prints ``node "N" deleted`` once the API accepted the delete, then
    (``--wait=true``, kubectl's default) waits until the object is gone: a Node with finalizers
    stays until they are removed. ``--timeout`` bounds the wait (0: a week, as kubectl)."""
    deleted = []
    for name in node_names(words):
        try:
            api.request("DELETE", f"/api/v1/nodes/{name}")
        except kc.NotFound:
            if opts.get("ignore-not-found") == "true":
                continue
            raise
        print(f'node "{name}" deleted', flush=True)
        deleted.append(name)
    if opts.get("wait", "true") == "false":
        return 0
    deadline = time.monotonic() + (kc.seconds(opts.get("timeout", "0")) or 7 * 86400)
    for name in deleted:
        while True:
            try:
                api.request("GET", f"/api/v1/nodes/{name}")
            except kc.NotFound:
                break
            if time.monotonic() > deadline:
                raise kc.KubectlError(f"error: timed out waiting for the condition on nodes/{name}")
            time.sleep(0.5)
    return 0


def main(argv: list[str]) -> int:
    words, opts = parse(argv)
    verb, rest = (words[0], words[1:]) if words else ("help", [])
    if verb == "version" and opts.get("client") == "true":
        print(f"Client Version: {kc.VERSION}\nKustomize Version: v5.4.2")
        return 0
    try:
        api = kc.Api(opts)
        if verb == "version":
            server = api.request("GET", "/version")["gitVersion"]
            print(
                f"Client Version: {kc.VERSION}\nKustomize Version: v5.4.2\nServer Version: {server}"
            )
            return 0
        if verb == "cluster-info":
            print(f"Kubernetes control plane is running at {api.server}")
            return 0
        if verb in ("cordon", "uncordon"):
            for name in node_names(rest):
                print(cordon(api, name, verb == "cordon"))
            return 0
        if kubectl_configmap.applies(verb, rest):
            return kubectl_configmap.run(api, verb, rest, opts, argv)
        commands = {"get": cmd_get, "wait": cmd_wait, "drain": cmd_drain, "delete": cmd_delete}
        if verb not in commands:
            print(f'error: unknown command "{verb}" for "kubectl" (stand-in)', file=sys.stderr)
            return 1
        return commands[verb](api, rest, opts)
    except kc.KubectlError as exc:
        print(str(exc), file=sys.stderr)
        return 1
