"""files/rke2m-preflight.sh on its own, every branch, in a throwaway machine view.

Each case runs the script (as the playbook does: ``sh -c <script> rke2m-preflight ROLE REACH
PORT``) under ``unshare`` with its own network, PID and mount namespaces: an empty network (no
listener, loopback down unless the case brings it up), a /proc showing only the case's
processes, and tmpfs over /run and /var/lib (so a case decides whether systemd "runs", where
the node's Python is recorded, and how much disk is free). What the kernel reports — CPUs,
memory, /proc/net/tcp, /proc/swaps — is real, except where a case bind-mounts a file over
/proc/swaps (swap is not namespaced; turning it on would change the whole machine).
Needs root, like the lab.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rke2_manager.config import PACKAGE_DIR
from tests.lab.fixtures import require_lab

SCRIPT = (PACKAGE_DIR / "playbooks" / "files" / "rke2m-preflight.sh").read_text()
SWAPS = (
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    "/dev/vdb                                partition\t3145724\t\t0\t\t-2\n"
)
BASE = f"""
set -e
mount -t tmpfs -o size=64g tmpfs /run
mkdir -p /run/systemd/system
mount -t tmpfs -o size=64g tmpfs /var/lib
mkdir -p /var/lib/rke2-manager
printf '%s\\n' {sys.executable} >/var/lib/rke2-manager/python
"""


def run(tmp_path: Path, role: str, reach: str = "", setup: str = "") -> dict[str, tuple[str, ...]]:
    """The script's result lines in a fresh view set up by BASE then ``setup``: check ->
    (result, message, fix)."""
    require_lab()
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed")
    (tmp_path / "script.sh").write_text(SCRIPT)
    inner = f'{BASE}\n{setup}\nexec sh -c "$(cat {tmp_path}/script.sh)" rke2m-preflight ' + (
        f"{role} '{reach}' 9345"
    )
    out = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount", "--mount-proc", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("rke2m-preflight-time|")
    results: dict[str, tuple[str, ...]] = {}
    for line in lines[:-1]:
        prefix, check, *rest = line.split("|")
        assert prefix == "rke2m-preflight" and len(rest) == 3, line
        results[check] = tuple(rest)
    return results


def fake_process(tmp_path: Path, name: str) -> str:
    """Shell that starts a process whose command name is ``name`` (as the kernel names it)."""
    return f"cp /bin/sleep {tmp_path}/{name}; {tmp_path}/{name} 60 &"


def test_a_clean_server(tmp_path: Path) -> None:
    found = run(tmp_path, "server")
    assert list(found) == [
        "ssh", "sudo", "os", "arch", "cpu", "memory", "ports", "reach", "swap",
        "networkmanager", "firewalld", "disk",
    ]  # fmt: skip
    assert found["sudo"] == ("pass", "commands run as root", "")
    assert found["os"][0] == "pass" and found["os"][1].endswith(", systemd")
    assert found["ports"] == ("pass", "TCP 6443, 9345, 10250, 2379, 2380 free", "")
    assert found["reach"] == ("pass", "not checked: no server runs yet to reach", "")
    assert found["networkmanager"] == ("pass", "NetworkManager is not running", "")
    assert found["firewalld"] == ("pass", "firewalld is not running", "")
    assert found["disk"] == ("pass", "64.0 GiB free on /var/lib", "")


def test_no_systemd_fails_os(tmp_path: Path) -> None:
    found = run(tmp_path, "agent", setup="rmdir /run/systemd/system")
    assert found["os"][0] == "fail"
    assert found["os"][1].endswith(" without systemd (/run/systemd/system is missing)")
    assert (
        found["os"][2] == "RKE2 installs systemd units: use a distribution that boots with systemd"
    )


def test_ports_taken_and_rke2_own(tmp_path: Path) -> None:
    listen = (
        f"{sys.executable} -c 'import socket, time; s = socket.socket(); "
        's.bind(("127.0.0.1", {port})); s.listen(); time.sleep(60)\' &'
    )
    setup = f"""
ip link set lo up
cp {sys.executable} {tmp_path}/rke2
{listen.format(port=6443).replace(sys.executable, f"{tmp_path}/rke2", 1)}
{listen.format(port=2379)}
for i in $(seq 50); do [ "$(grep -c ' 0A ' /proc/net/tcp)" -ge 2 ] && break; sleep 0.1; done
"""
    found = run(tmp_path, "server", setup=setup)
    result, message, fix = found["ports"]
    assert result == "fail"
    comm = Path(sys.executable).name[:15]  # the kernel's name of the listener's process
    assert message.startswith(f"in use: 2379 (by {comm}, pid ") and message.endswith(")")
    assert "6443" not in message  # held by RKE2 itself
    assert fix == (
        "stop what listens there (ss -ltnp shows it): a server needs TCP 6443, 9345, 10250, "
        "2379, 2380 free for RKE2"
    )
    # an agent needs only the kubelet's port
    assert run(tmp_path, "agent", setup=setup)["ports"] == ("pass", "TCP 10250 free", "")


def test_rke2_on_its_own_ports_passes(tmp_path: Path) -> None:
    setup = f"""
ip link set lo up
cp {sys.executable} {tmp_path}/rke2
{tmp_path}/rke2 -c 'import socket, time; s = socket.socket(); s.bind(("127.0.0.1", 9345)); s.listen(); time.sleep(60)' &
for i in $(seq 50); do grep -q ':2481 ' /proc/net/tcp && break; sleep 0.1; done
"""  # noqa: E501
    found = run(tmp_path, "server", setup=setup)
    assert found["ports"] == (
        "pass",
        "TCP 6443, 9345, 10250, 2379, 2380 free or held by RKE2 itself: 9345 (rke2)",
        "",
    )


def test_reach(tmp_path: Path) -> None:
    down = run(tmp_path, "agent", reach="127.0.0.1")
    assert down["reach"] == (
        "fail",
        "cannot reach 127.0.0.1:9345 (Network is unreachable); "
        "127.0.0.1:6443 (Network is unreachable)",
        "allow TCP 9345 and 6443 from this node to 127.0.0.1 (the servers' supervisor and API) "
        "in every firewall between them",
    )
    half = run(tmp_path, "agent", reach="127.0.0.1", setup="ip link set lo up")
    assert half["reach"][1] == "cannot reach 127.0.0.1:9345 (Connection refused); " + (
        "127.0.0.1:6443 (Connection refused)"
    )
    setup = f"""
ip link set lo up
{sys.executable} -c 'import socket, time; a = socket.socket(); a.bind(("127.0.0.1", 9345)); a.listen(); b = socket.socket(); b.bind(("127.0.0.1", 6443)); b.listen(); time.sleep(60)' &
for i in $(seq 50); do [ "$(grep -c ' 0A ' /proc/net/tcp)" -ge 2 ] && break; sleep 0.1; done
"""  # noqa: E501
    up = run(tmp_path, "agent", reach="127.0.0.1", setup=setup)
    assert up["reach"] == ("pass", "127.0.0.1 answers on TCP 9345 and 6443", "")


def test_reach_without_a_recorded_python_fails_the_script(tmp_path: Path) -> None:
    require_lab()
    (tmp_path / "script.sh").write_text(SCRIPT)
    inner = (
        f"{BASE}\nrm /var/lib/rke2-manager/python\n"
        f'exec sh -c "$(cat {tmp_path}/script.sh)" rke2m-preflight agent 127.0.0.1 9345'
    )
    out = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount", "--mount-proc", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "preflight: no Python recorded in /var/lib/rke2-manager/python (the fence's raise finds it)"
    )


def test_swap_networkmanager_firewalld_disk(tmp_path: Path) -> None:
    (tmp_path / "swaps").write_text(SWAPS)
    setup = f"""
mount --bind {tmp_path}/swaps /proc/swaps
{fake_process(tmp_path, "NetworkManager")}
{fake_process(tmp_path, "firewalld")}
umount /var/lib
mount -t tmpfs -o size=3g tmpfs /var/lib
mkdir -p /var/lib/rke2-manager
"""
    found = run(tmp_path, "server", setup=setup)
    assert found["swap"] == (
        "warn",
        "swap is on: /dev/vdb (3.0 GiB)",
        "turn it off (swapoff -a) and remove its entries from /etc/fstab: the kubelet's memory "
        "limits and evictions assume no swap",
    )
    assert found["networkmanager"][:2] == (
        "warn",
        "NetworkManager runs and may take over the CNI's interfaces (cali*, flannel*)",
    )
    assert (
        "unmanaged-devices=interface-name:flannel*;interface-name:cali*"
        in found["networkmanager"][2]
    )
    assert found["firewalld"] == (
        "warn",
        "firewalld runs: it conflicts with RKE2's default networking (Canal)",
        "systemctl disable --now firewalld (Canal keeps its own iptables rules)",
    )
    assert found["disk"] == (
        "fail",
        "3.0 GiB free on /var/lib",
        "free at least 5 GiB there (20 GiB recommended): images and etcd data live under "
        "/var/lib/rancher/rke2",
    )


def test_networkmanager_configured_and_cloud_setup(tmp_path: Path) -> None:
    conf = tmp_path / "nm"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "conf.d" / "rke2-canal.conf").write_text(
        "[keyfile]\nunmanaged-devices=interface-name:flannel*;interface-name:cali*\n"
    )
    setup = f"""
mkdir -p /etc/NetworkManager
mount --bind {conf} /etc/NetworkManager
{fake_process(tmp_path, "NetworkManager")}
"""
    found = run(tmp_path, "agent", setup=setup)
    assert found["networkmanager"] == (
        "pass",
        "NetworkManager runs and leaves the CNI's interfaces alone",
        "",
    )
    wants = tmp_path / "systemd"
    (wants / "multi-user.target.wants").mkdir(parents=True)
    (wants / "multi-user.target.wants" / "nm-cloud-setup.service").write_text("")
    found = run(tmp_path, "agent", setup=f"mount --bind {wants} /etc/systemd/system")
    assert found["networkmanager"] == (
        "fail",
        "nm-cloud-setup is enabled (/etc/systemd/system/multi-user.target.wants/"
        "nm-cloud-setup.service): RKE2's units refuse to start while it is",
        "systemctl disable --now nm-cloud-setup.service nm-cloud-setup.timer, then reboot",
    )


@pytest.mark.parametrize(
    ("role", "online", "mem_kib", "cpu", "memory"),
    [
        ("server", "0", 3_000_000, ("fail", "1 CPU; a server needs at least 2"),
         ("fail", "2.9 GiB of memory; a server needs 4 GB")),
        ("agent", "0", 3_000_000, ("warn", "1 CPU; RKE2 documents 2 as the minimum"),
         ("warn", "2.9 GiB of memory; RKE2 documents 4 GB as the minimum")),
        ("agent", "0-1", 1_500_000, ("pass", "2 CPUs"),
         ("fail", "1.4 GiB of memory; an agent needs at least 2 GB")),
        ("server", "0-3", 3_800_000, ("pass", "4 CPUs"), ("pass", "3.6 GiB of memory")),
    ],
)  # fmt: skip
def test_cpu_and_memory_minimums(
    tmp_path: Path,
    role: str,
    online: str,
    mem_kib: int,
    cpu: tuple[str, str],
    memory: tuple[str, str],
) -> None:
    """What the kernel reports is replaced (files bind-mounted over the ones getconf and the
    script read): the thresholds are RKE2's 2 CPUs and 4 GB (3.5 GiB of MemTotal)."""
    (tmp_path / "online").write_text(online + "\n")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    fake = [f"MemTotal:       {mem_kib} kB" if x.startswith("MemTotal:") else x for x in meminfo]
    (tmp_path / "meminfo").write_text("\n".join(fake) + "\n")
    setup = f"""
mount --bind {tmp_path}/online /sys/devices/system/cpu/online
mount --bind {tmp_path}/meminfo /proc/meminfo
"""
    found = run(tmp_path, role, setup=setup)
    assert found["cpu"][:2] == cpu
    assert found["memory"][:2] == memory
