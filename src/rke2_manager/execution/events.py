"""Translate ansible-runner events into per-host facts (pure functions, no I/O).

Playbooks mark a node's milestone with a task whose name starts with a marker, e.g.
``name: "[rke2m] node ready"``; its ``ok`` event sets the node ACTIVE before the play ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

READY_MARKER = "[rke2m] node ready"
REMOVED_MARKER = "[rke2m] node removed"

Kind = Literal["touched", "failed", "unreachable", "host_key_changed", "ready", "removed"]

#: What OpenSSH prints when a host's key differs from the pinned one (or no pinned key of the
#: type the host offers is known while strict checking is on).
_HOST_KEY_FAILURE = re.compile(
    r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed"
)
_FINGERPRINT = re.compile(r"\b(SHA256:[A-Za-z0-9+/]{43}|MD5(?::[0-9a-f]{2}){16})")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class HostEvent:
    host: str
    kind: Kind
    reason: str | None = None
    fingerprint: str | None = None
    """For ``host_key_changed``: the fingerprint of the key the host offered, if SSH said."""


def host_key_changed(host: str, message: str) -> HostEvent:
    """The fact for an SSH failure whose ``message`` says the host key did not match."""
    found = _FINGERPRINT.search(message)
    fingerprint = found.group(1) if found else None
    offered = f" (it offered {fingerprint})" if fingerprint else ""
    return HostEvent(
        host, "host_key_changed", f"host key of node {host} changed{offered}", fingerprint
    )


def _message(result: dict[str, Any]) -> str:
    # command/shell/raw say only "non-zero return code" in msg: their stderr says why
    keys = (
        ("stderr", "msg", "reason")
        if result.get("rc") not in (None, 0)
        else ("msg", "stderr", "reason")
    )
    for key in keys:
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[-1][:500]
    if result.get("rc") not in (None, 0):
        return f"exit code {result['rc']}"
    return "failed"


def delegate_of(event: dict[str, Any]) -> str | None:
    """The host a task was delegated to (``delegate_to``), when it is not the event's own host.

    ansible-core 2.19 strips the delegate's inventory name from the result
    (``_ansible_delegated_vars`` keeps only its address) and a delegate that cannot be reached
    leaves no trace in the result at all; the display line ansible-runner stores with the event
    names it (``fatal: [w1 -> m1(127.0.1.10)]: FAILED!``) unless the task delegated to its own
    host. Older versions and other callbacks carry the name in the data, so that is read first.
    """
    data = event.get("event_data") or {}
    host = str(data.get("host") or "")
    result = data.get("res")
    delegated = result.get("_ansible_delegated_vars") if isinstance(result, dict) else None
    delegated = delegated if isinstance(delegated, dict) else {}
    name = data.get("delegated_host") or delegated.get("ansible_delegated_host")
    if not name:
        label = re.search(
            rf"\[{re.escape(host)} -> ([^\]\s(]+)", _ANSI.sub("", str(event.get("stdout") or ""))
        )
        # not the address in the result: it is there too when a task delegates to its own host
        name = label.group(1) if label else None
    return str(name) if name and name != host else None


def interpret(event: dict[str, Any]) -> HostEvent | None:
    """The host fact carried by one ansible-runner event, or None.

    A failure in a task delegated to another host is the target host's failure (its node is
    the one that fails), and the reason names the delegate too: ``drain via m1 failed: …``,
    ``unreachable via m1: …``.
    """
    kind = event.get("event")
    data = event.get("event_data") or {}
    host = data.get("host")
    if not host:
        return None
    task = str(data.get("task") or "").strip()
    if kind == "runner_on_start":
        return HostEvent(host, "touched")
    if kind == "runner_on_ok":
        if task.startswith(READY_MARKER):
            return HostEvent(host, "ready")
        if task.startswith(REMOVED_MARKER):
            return HostEvent(host, "removed")
        return HostEvent(host, "touched")
    if kind == "runner_on_failed" and not data.get("ignore_errors"):
        result = data.get("res") or {}
        via = delegate_of(event)
        if via:
            return HostEvent(host, "failed", f"{task} via {via} failed: {_message(result)}")
        return HostEvent(host, "failed", f"task '{task}' failed: {_message(result)}")
    if kind == "runner_on_unreachable":
        result = data.get("res") or {}
        text = " ".join(str(result.get(k) or "") for k in ("msg", "stderr"))
        via = delegate_of(event)
        if via and _HOST_KEY_FAILURE.search(text):
            # the delegate's key changed: no fingerprint is offered for the target to accept
            return HostEvent(
                host, "unreachable", f"unreachable via {via}: {host_key_changed(via, text).reason}"
            )
        if _HOST_KEY_FAILURE.search(text):
            return host_key_changed(host, text)
        if via:
            return HostEvent(host, "unreachable", f"unreachable via {via}: {_message(result)}")
        return HostEvent(host, "unreachable", f"unreachable: {_message(result)}")
    return None


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value in ``text`` (tokens, keys) with ``********``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text
