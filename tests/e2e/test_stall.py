"""A host that accepts SSH and then stalls fails the job within RKE2M_TASK_TIMEOUT, named."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from rke2_manager.config import Settings
from tests.e2e.support import Api
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

START_STEP = "Start rke2-server and wait until it is ready"


def host_pids(lab: Lab, host: str) -> set[int]:
    """Every process in the host's network namespace (root-namespace PIDs)."""
    out = subprocess.run(
        ["ip", "netns", "pids", lab.host(host).netns], capture_output=True, text=True, check=True
    ).stdout
    return {int(pid) for pid in out.split()}


@contextmanager
def frozen(lab: Lab, host: str) -> Iterator[None]:
    """Stop every process of ``host`` (sshd and its sessions included) until the block ends:
    TCP still connects (the kernel answers), nothing on the host does."""
    stopped: set[int] = set()
    try:
        while pids := host_pids(lab, host) - stopped:  # again for any forked meanwhile
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            stopped |= pids
        yield
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def wait_for_process(lab: Lab, host: str, pattern: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not lab.nsexec(host, ["pgrep", "-f", pattern]).ok:
        assert time.monotonic() < deadline, f"no {pattern!r} on {host} after {timeout}s"
        time.sleep(0.1)


def test_a_host_that_stalls_mid_step_fails_the_job_naming_the_host_and_the_step(
    api: Api, make_lab: Callable[[list[str]], Lab], settings: Settings
) -> None:
    lab = make_lab(["m1"])
    # the start takes 8 s: well inside the task bound unless the host stalls during it
    lab.run("m1", "echo RKE2_STANDIN_READY_DELAY=8 > /etc/default/rke2-server", check=True)
    settings.task_timeout = 20
    cid = api.create_cluster("stall", lab, [("m1", "server")])
    job_id = api.install(cid)
    wait_for_process(lab, "m1", "systemctl (re)?start rke2-server")
    with frozen(lab, "m1"):
        job = api.wait(job_id, timeout=90)
    why = f"task '{START_STEP}' did not finish within 20s (RKE2M_TASK_TIMEOUT)"
    assert job["status"] == "failed"
    assert job["reason"] == f"m1: {why}", job["reason"]
    assert api.nodes(cid) == {"m1": ("FAILED", why)}
    assert api.lock(cid) == ("idle", None)
    log = api.log(job_id)
    assert f"TASK [{START_STEP}]" in log and "fatal: [m1]: FAILED!" in log, log[-3000:]
    assert "Timed out after 20 second(s)" in log, log[-3000:]
