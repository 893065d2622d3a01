"""ConfigMap commands of the stand-in kubectl: ``create configmap NAME [-n NS]
--from-literal=k=v...``, ``get configmap[s]|cm [NAME] [-n NS] [-o name|json|jsonpath=…]``,
``delete configmap NAME... [-n NS] [--ignore-not-found]`` (kubectl's messages)."""

from __future__ import annotations

import json
import sys
from typing import Any

import kubectl_client as kc
import kubectl_jsonpath
from kubectl_print import age, table

KINDS = ("configmap", "configmaps", "cm")


def applies(verb: str, words: list[str]) -> bool:
    """Whether ``kubectl <verb> <words…>`` is a ConfigMap command."""
    return verb in ("create", "get", "delete") and bool(words) and words[0].split("/")[0] in KINDS


def literals(argv: list[str]) -> dict[str, str]:
    """Every ``--from-literal=k=v`` / ``--from-literal k=v`` (repeatable) in argv."""
    values = []
    for i, arg in enumerate(argv):
        if arg.startswith("--from-literal="):
            values.append(arg.split("=", 1)[1])
        elif arg == "--from-literal" and i + 1 < len(argv):
            values.append(argv[i + 1])
    data: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise kc.KubectlError(f"error: invalid literal source {item}, expected key=value")
        data[key] = value
    return data


def run(api: kc.Api, verb: str, words: list[str], opts: dict[str, str], argv: list[str]) -> int:
    ns = opts.get("namespace") or "default"
    base = f"/api/v1/namespaces/{ns}/configmaps"
    kind, names = words[0], words[1:]
    if "/" in kind:
        names = [kind.split("/", 1)[1], *names]
    if verb == "create":
        if len(names) != 1:
            raise kc.KubectlError(f"error: exactly one NAME is required, got {len(names)}")
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": names[0]},
            "data": literals(argv),
        }
        try:
            api.request("POST", base, body)
        except kc.KubectlError as exc:
            msg = str(exc).split(": ", 1)[-1]
            raise kc.KubectlError(f"error: failed to create configmap: {msg}") from exc
        print(f"configmap/{names[0]} created")
        return 0
    if verb == "delete":
        for name in names:
            try:
                api.request("DELETE", f"{base}/{name}")
            except kc.NotFound:
                if opts.get("ignore-not-found") == "true":
                    continue
                raise
            print(f'configmap "{name}" deleted')
        return 0
    if names:
        objs = [api.request("GET", f"{base}/{n}") for n in names]
    else:
        objs = api.request("GET", base)["items"]
        if not objs:
            print(f"No resources found in {ns} namespace.", file=sys.stderr)
            return 0
    show(objs, len(names) == 1, opts)
    return 0


def show(objs: list[dict[str, Any]], single: bool, opts: dict[str, str]) -> None:
    out = opts.get("output", "")
    if out == "name":
        print("\n".join(f"configmap/{o['metadata']['name']}" for o in objs))
    elif out == "json":
        data = (
            objs[0]
            if single
            else {
                "apiVersion": "v1",
                "items": objs,
                "kind": "List",
                "metadata": {"resourceVersion": ""},
            }
        )
        print(json.dumps(data, indent=4))
    elif out.startswith("jsonpath="):
        data = objs[0] if single else {"kind": "List", "items": objs}
        sys.stdout.write(kubectl_jsonpath.execute(out[9:].strip("'"), data))
    elif out == "":
        rows = [["NAME", "DATA", "AGE"]]
        for o in objs:
            meta = o["metadata"]
            rows.append(
                [meta["name"], str(len(o.get("data") or {})), age(meta["creationTimestamp"])]
            )
        print(table(rows, opts.get("no-headers") != "true"))
    else:
        raise kc.KubectlError(
            f'error: unable to match a printer suitable for the output format "{out}" (stand-in)'
        )
