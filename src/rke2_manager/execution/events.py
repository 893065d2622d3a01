"""Translate ansible-runner events into per-host facts (pure functions, no I/O).

Playbooks mark a node's milestone with a task whose name starts with a marker, e.g.
``name: "[rke2m] node ready"``; its ``ok`` event sets the node ACTIVE before the play ends.
Each task's start on a host is a ``started`` fact naming the task, and every result for that
host (ok, failed, skipped, unreachable) follows it, so a follower knows what each host is busy
with at any moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

READY_MARKER = "[rke2m] node ready"
REMOVED_MARKER = "[rke2m] node removed"
UPGRADING_MARKER = "[rke2m] node upgrading"
#: Its ``debug`` message is the RKE2 version the node runs (its kubelet version).
VERSION_MARKER = "[rke2m] node version"
#: Tasks (``debug`` with a mapping as ``msg``) that report data for the manager to record:
#: ``[rke2m] snapshot saved`` (tasks/snapshot.yml), ``[rke2m] snapshots listed``,
#: ``[rke2m] preflight`` (tasks/preflight.yml).
REPORT_MARKERS = ("[rke2m] snapshot saved", "[rke2m] snapshots listed", "[rke2m] preflight")

Kind = Literal[
    "started",
    "touched",
    "failed",
    "unreachable",
    "host_key_changed",
    "ready",
    "removed",
    "report",
    "upgrading",
    "version",
]

#: How a task ended on a host; ``ignored``: it failed, and its ``ignore_errors`` allowed that.
Result = Literal["ok", "changed", "failed", "ignored", "skipped", "unreachable"]

#: The setting that bounds every task (passed to Ansible as ``ANSIBLE_TASK_TIMEOUT``).
TASK_TIMEOUT_SETTING = "RKE2M_TASK_TIMEOUT"

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
    task: str | None = None
    """For ``started``: the name of the task the host has begun; for ``report``: the marker."""
    data: dict[str, Any] | None = None
    """For ``report``: the task's ``msg`` mapping (untrusted: it comes from the host)."""
    result: Result | None = field(default=None, compare=False)
    """For a task's end on the host: how it ended (:func:`task_result`)."""


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


def timed_out(event: dict[str, Any], task_timeout: int | None) -> int | None:
    """The bound (seconds) a failed task's event says it ran into, or None if it did not.

    ansible-core 2.19 ends a task that outlives ``task_timeout`` (or its own ``timeout:``
    keyword) with ``res.timedout = {"period": <seconds>, ...}``. A ``no_log`` task's result is
    censored to nothing of that, so there a failure that took at least ``task_timeout`` counts
    as timed out: a task failing by itself that late would have been cut off first.
    """
    data = event.get("event_data") or {}
    result = data.get("res")
    result = result if isinstance(result, dict) else {}
    timedout = result.get("timedout")
    if isinstance(timedout, dict) and isinstance(timedout.get("period"), int):
        return int(timedout["period"])
    duration = data.get("duration")
    if (
        "censored" in result
        and task_timeout
        and isinstance(duration, (int, float))
        and duration >= task_timeout
    ):
        return task_timeout
    return None


def _failure(event: dict[str, Any], task: str, task_timeout: int | None) -> str:
    data = event.get("event_data") or {}
    via = delegate_of(event)
    step = f"{task} via {via}" if via else f"task '{task}'"
    period = timed_out(event, task_timeout)
    if period is not None:
        # say which knob bounded it, unless the task's own timeout: keyword did
        setting = f" ({TASK_TIMEOUT_SETTING})" if period == task_timeout else ""
        return f"{step} did not finish within {period}s{setting}"
    return f"{step} failed: {_message(data.get('res') or {})}"


def interpret(event: dict[str, Any], task_timeout: int | None = None) -> HostEvent | None:
    """The host fact carried by one ansible-runner event, or None.

    A failure in a task delegated to another host is the target host's failure (its node is
    the one that fails), and the reason names the delegate too: ``drain via m1 failed: …``,
    ``unreachable via m1: …``; an unreachable host names the task it was in
    (``unreachable: … (during task 'Stage RKE2')``). A task cut off by its bound says so:
    ``task 'Start the server' did not finish within 1800s (RKE2M_TASK_TIMEOUT)`` when the bound
    was ``task_timeout`` (the run's ``ANSIBLE_TASK_TIMEOUT``).
    """
    kind = event.get("event")
    data = event.get("event_data") or {}
    host = data.get("host")
    if not host:
        return None
    task = str(data.get("task") or "").strip()
    if kind == "runner_on_start":
        return HostEvent(host, "started", task=task)
    if kind == "runner_on_ok":
        if task.startswith(READY_MARKER):
            return HostEvent(host, "ready")
        if task.startswith(REMOVED_MARKER):
            return HostEvent(host, "removed")
        if task.startswith(UPGRADING_MARKER):
            return HostEvent(host, "upgrading")
        if task.startswith(VERSION_MARKER):
            return HostEvent(host, "version", str((data.get("res") or {}).get("msg") or ""))
        msg = (data.get("res") or {}).get("msg")
        if task in REPORT_MARKERS and isinstance(msg, dict):
            return HostEvent(host, "report", task=task, data=msg)
        return HostEvent(host, "touched")
    if kind == "runner_on_failed":
        if data.get("ignore_errors"):
            return HostEvent(host, "touched")
        return HostEvent(host, "failed", _failure(event, task, task_timeout))
    if kind == "runner_on_skipped":
        return HostEvent(host, "touched")
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
        # SSH keep-alives end a session to a host that stalled mid-task: say which task
        during = f" (during task '{task}')" if task else ""
        return HostEvent(host, "unreachable", f"unreachable: {_message(result)}{during}")
    return None


def task_result(event: dict[str, Any]) -> Result | None:
    """How the task of an ansible-runner event ended on its host; None if not a task's end."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    if kind == "runner_on_ok":
        result = data.get("res")
        return "changed" if isinstance(result, dict) and result.get("changed") else "ok"
    if kind == "runner_on_failed":
        return "ignored" if data.get("ignore_errors") else "failed"
    if kind == "runner_on_skipped":
        return "skipped"
    if kind == "runner_on_unreachable":
        return "unreachable"
    return None


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value in ``text`` (tokens, keys) with ``********``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text
