"""Preflight on lab hosts: a port taken fails and stops the install before any node is touched,
swap on warns, ``skip_preflight`` overrides one check, scale add checks the new nodes.

Swap: the kernel's list of active swap areas, ``/proc/swaps``, is what the check reads. Swap is
not namespaced (``swapon`` in a lab host would turn swap on for the whole machine), so the test
bind-mounts a file over ``/proc/swaps`` inside the host's own mount namespace: the check reads
the very file it reads on a real machine, and only that host sees the swap area.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.support import Api, uninstalled
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

SWAPS = (
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    "/swapfile                               file\t\t2097148\t\t0\t\t-2\n"
)
SWAP_WARNING = {
    "check": "swap",
    "result": "warn",
    "message": "swap is on: /swapfile (2.0 GiB)",
    "fix": "turn it off (swapoff -a) and remove its entries from /etc/fstab: the kubelet's "
    "memory limits and evictions assume no swap",
    "skipped": False,
}


def listen(lab: Lab, host: str, port: int) -> int:
    """Start a program listening on ``port`` in ``host`` (as any other service would); its pid."""
    out = lab.run(
        host,
        "nohup python3 -c 'import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f's.bind(("0.0.0.0", {port})); s.listen(); time.sleep(3600)\' '
        ">/dev/null 2>&1 & echo $!",
        check=True,
    )
    pid = int(out.stdout.split()[-1])
    lab.run(host, f"for i in $(seq 50); do grep -q ':{port:04X} ' /proc/net/tcp && exit; "
            "sleep 0.1; done; exit 1", check=True)  # fmt: skip
    return pid


def swap_on(lab: Lab, host: str) -> None:
    lab.run(
        host,
        f"printf '%s' '{SWAPS}' >/root/swaps && mount --bind /root/swaps /proc/swaps",
        check=True,
    )


def checks(api: Api, job_id: int) -> dict[str, dict[str, dict[str, Any]]]:
    r = api.client.get(f"/api/jobs/{job_id}/preflight")
    assert r.status_code == 200, r.text
    return {h: {c["check"]: c for c in cs} for h, cs in r.json()["hosts"].items()}


def untouched(lab: Lab, hosts: list[str]) -> None:
    """Nothing of RKE2 on the hosts: no binary, config, data, artifacts or running unit."""
    for host in hosts:
        assert uninstalled(lab, host) == [], host
        assert lab.run(host, "ls /etc/rancher 2>/dev/null").stdout == "", host


def test_port_taken_stops_install_swap_warns_skip_overrides(
    make_lab: Callable[[list[str]], Lab], api: Api
) -> None:
    lab = make_lab(["m1", "w1", "w2"])
    cid = api.create_cluster("pf", lab, [("m1", "server"), ("w1", "agent")])
    taken = listen(lab, "m1", 9345)
    swap_on(lab, "w1")

    job = api.wait(api.install(cid))
    assert job["status"] == "failed"
    ports = f"in use: 9345 (by python3, pid {taken})"
    assert job["reason"] == f"m1: preflight failed: ports ({ports})"
    found = checks(api, job["id"])
    assert found["m1"]["ports"] == {
        "check": "ports",
        "result": "fail",
        "message": ports,
        "fix": "stop what listens there (ss -ltnp shows it): a server needs TCP 6443, 9345, "
        "10250, 2379, 2380 free for RKE2",
        "skipped": False,
    }
    assert found["w1"]["swap"] == SWAP_WARNING
    assert found["w1"]["ports"]["result"] == "pass"  # an agent needs 10250 only
    assert found["m1"]["swap"]["result"] == "pass"
    assert [c["result"] for c in found["m1"].values()].count("fail") == 1, found["m1"]
    assert found["m1"]["reach"]["message"] == "not checked: no server runs yet to reach"
    assert found["m1"]["clock"]["result"] == "pass"
    nodes = api.nodes(cid)
    assert nodes["m1"] == ("FAILED", f"task 'Stop on a failed preflight check' failed: m1: "
                           f"preflight failed: ports ({ports})"), nodes  # fmt: skip
    assert nodes["w1"][0] == "FAILED"
    assert str(nodes["w1"][1]).endswith("w1: not going on: preflight failed on m1"), nodes
    # stopped before anything changed on any node
    untouched(lab, ["m1", "w1"])
    assert "Put RKE2 and its configuration" not in api.log(job["id"])

    # A failing check the operator overrides: another program on 2380, skip_preflight=ports.
    lab.run("m1", f"kill {taken}", check=True)
    other = listen(lab, "m1", 2380)
    params = {"skip_preflight": ["ports"]}
    plan = api.client.post(f"/api/jobs/install/{cid}", params={**params, "dry_run": "true"})
    assert plan.status_code == 200, plan.text
    planned = plan.json()["jobs"]
    assert [(j["operation"], j["preflight_skip"]) for j in planned] == [("install", ["ports"])]
    r = api.client.post(f"/api/jobs/install/{cid}", params=params)
    assert r.status_code == 202, r.text
    job = api.succeed(r.json()["job_id"], timeout=180)
    # the plan is what the job did: the same nodes, every one of them installed
    assert job["nodes"] == planned[0]["nodes"]
    assert sorted(n["hostname"] for n in job["nodes"]) == ["m1", "w1"]
    found = checks(api, job["id"])
    assert found["m1"]["ports"]["message"] == f"in use: 2380 (by python3, pid {other})"
    assert (found["m1"]["ports"]["result"], found["m1"]["ports"]["skipped"]) == ("fail", True)
    assert found["w1"]["swap"] == SWAP_WARNING  # a warning never stops a job
    assert api.nodes(cid) == {"m1": ("ACTIVE", None), "w1": ("ACTIVE", None)}

    # Scale add checks the new node, which reaches the servers; a port taken there stops it.
    kubelet = listen(lab, "w2", 10250)
    accepted = api.add(cid, lab, [("w2", "agent")])
    job = api.wait(accepted["job_id"])
    assert job["status"] == "failed"
    assert (
        job["reason"] == f"w2: preflight failed: ports (in use: 10250 (by python3, pid {kubelet}))"
    )
    found = checks(api, job["id"])
    assert set(found) == {"w2"}
    m1 = lab.host("m1").ip
    assert found["w2"]["reach"]["message"] == f"{m1} answers on TCP 9345 and 6443"
    untouched(lab, ["w2"])


def test_preflight_job_and_skip(make_lab: Callable[[list[str]], Lab], api: Api) -> None:
    lab = make_lab(["m1", "w1"])
    cid = api.create_cluster("pf2", lab, [("m1", "server"), ("w1", "agent")])
    listen(lab, "m1", 2380)
    r = api.client.post(f"/api/clusters/{cid}/preflight")
    assert r.status_code == 202, r.text
    assert (r.json()["job"]["operation"], r.json()["job"]["nodes"]) == ("preflight", [])
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "failed"
    assert "preflight failed: ports (in use: 2380 (by python3, pid " in job["reason"]
    body = api.client.get(f"/api/jobs/{job['id']}/preflight").json()
    assert (body["failed"], body["unreported"]) == ({"m1": ["ports"]}, [])
    assert [c["check"] for c in body["hosts"]["w1"]] == [
        "ssh", "sudo", "os", "arch", "cpu", "memory", "ports", "reach", "swap",
        "networkmanager", "firewalld", "disk", "clock",
    ]  # fmt: skip
    assert api.nodes(cid) == {"m1": ("PENDING", None), "w1": ("PENDING", None)}

    # w1's clock runs 100 s ahead (its `date`, which the check reads, says so)
    lab.run(
        "w1",
        "printf '#!/bin/sh\\nexec /usr/bin/date -d @$(( $(/usr/bin/date +%%s) + 100 )) \"$@\"\\n'"
        " >/usr/local/bin/date && chmod +x /usr/local/bin/date && date +%s",
        check=True,
    )
    r = api.client.post(f"/api/clusters/{cid}/preflight", params={"skip_preflight": "ports"})
    job = api.succeed(r.json()["job_id"])
    body = api.client.get(f"/api/jobs/{job['id']}/preflight").json()
    assert body["failed"] == {}
    assert {c["check"]: c["skipped"] for c in body["hosts"]["m1"]}["ports"] is True
    clock = {c["check"]: c for c in body["hosts"]["w1"]}["clock"]
    ahead = re.fullmatch(r"clock (\d+) s ahead of the manager's", clock["message"])
    assert ahead is not None and 90 <= int(ahead.group(1)) <= 100, clock
    assert (clock["result"], clock["fix"]) == (
        "warn",
        "keep the clocks in sync (chrony or systemd-timesyncd): etcd complains beyond 1 s",
    )
    assert {c["check"]: c for c in body["hosts"]["m1"]}["clock"]["result"] == "pass"
    assert api.nodes(cid) == {"m1": ("PENDING", None), "w1": ("PENDING", None)}
    untouched(lab, ["m1", "w1"])

    # a host the checks cannot reach fails its ssh check, as the manager saw it
    lab.link_down("w1")
    r = api.client.post(f"/api/clusters/{cid}/preflight", params={"skip_preflight": "ports"})
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "failed" and job["reason"].startswith("w1: unreachable"), job
    body = api.client.get(f"/api/jobs/{job['id']}/preflight").json()
    assert (body["failed"], body["unreported"]) == ({"w1": ["ssh"]}, [])
    (ssh,) = body["hosts"]["w1"]
    assert (ssh["check"], ssh["result"]) == ("ssh", "fail")
    assert ssh["message"].startswith("unreachable"), ssh
    assert ssh["fix"].startswith("make the host reachable over SSH from the manager"), ssh
    assert api.nodes(cid) == {"m1": ("PENDING", None), "w1": ("PENDING", None)}
