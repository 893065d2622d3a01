"""The lab itself: SSH hosts from network namespaces and the stand-in RKE2 on them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import cluster
from tests.lab._teardown import BASE_DIR
from tests.lab.fixtures import LabFactory
from tests.lab.ssh import SSH_OPTIONS, ansible_env, inventory
from tests.lab.standin import build_artifact

pytestmark = pytest.mark.lab


def test_hosts_are_separate_machines_reached_by_key(lab_factory: LabFactory) -> None:
    lab = lab_factory(["alpha", "beta"])
    assert lab.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    lab.run("alpha", "echo alpha-only > /etc/lab-marker", check=True)
    for h in lab.hosts:
        out = lab.run(
            h.name,
            "hostname; cat /etc/hosts /etc/resolv.conf; ps -e -o comm=; "
            "cat /etc/lab-marker 2>/dev/null || echo no-marker",
            check=True,
        ).stdout
        assert out.splitlines()[0] == h.name
        assert all(f"{o.ip}\t{o.name}" in out for o in lab.hosts)
        assert "nameserver 127.0.0.1" in out
        assert "options timeout:1 attempts:1" in out
        assert ("alpha-only" in out) == (h.name == "alpha")
        # Own PID namespace: the host sees its own init and sshd, not the machine's processes.
        assert "systemd" in out and "pytest" not in out
    probe = lab.run("beta", "command -v kubectl; systemctl --version; test -d /run/systemd/system")
    assert probe.ok and "/kubectl" not in probe.stdout and "stand-in" in probe.stdout
    # Password logins are refused: key only.
    nokey = subprocess.run(
        [
            "ssh",
            *SSH_OPTIONS,
            "-o",
            "PubkeyAuthentication=no",
            f"root@{lab.host('beta').ip}",
            "true",
        ],
        capture_output=True,
    )
    assert nokey.returncode == 255


def test_failure_injection(lab_factory: LabFactory) -> None:
    lab = lab_factory(["one"])
    lab.run("one", "sleep 300 >/dev/null 2>&1 &", check=True)
    lab.stop_sshd("one")
    assert lab.run("one", "true", timeout=10).rc == 255
    assert lab.nsexec("one", ["pgrep", "-x", "sleep"]).ok  # other processes live on
    lab.start_sshd("one")
    assert lab.run("one", "true").ok
    lab.link_down("one")
    assert not lab.run("one", "true", timeout=2).ok
    lab.link_up("one")
    assert lab.run("one", "true").ok


def test_teardown_leaves_nothing_behind(lab_factory: LabFactory) -> None:
    started = time.monotonic()
    lab = lab_factory(3)
    up = time.monotonic() - started
    names = [h.netns for h in lab.hosts] + [h.veth for h in lab.hosts] + [lab.bridge]
    pids = [
        int(p)
        for h in lab.hosts
        for p in subprocess.run(
            ["ip", "netns", "pids", h.netns], capture_output=True, text=True
        ).stdout.split()
    ]
    assert pids
    started = time.monotonic()
    lab.close()
    down = time.monotonic() - started
    print(f"3 hosts: up {up:.2f}s, down {down:.2f}s")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in links or n in netns for n in names)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
    assert lab.dir.name not in Path("/proc/mounts").read_text()
    assert not lab.dir.exists() and lab.id not in os.listdir(BASE_DIR)


def test_install_rejects_a_bad_checksum(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory(["h1"])
    cluster.push_artifact(lab, "h1", build_artifact(tmp_path / "bad", corrupt=True))
    res = cluster.install(lab, "h1")
    assert res.rc != 0 and "sha256 does not match" in res.stderr
    assert not lab.run("h1", "test -e /usr/local/bin/rke2").ok


def test_ansible_systemd_service_drives_the_standin(
    lab_factory: LabFactory, rke2_artifact: Path, tmp_path: Path
) -> None:
    lab = lab_factory(["m1"])
    cluster.push_artifact(lab, "m1", rke2_artifact)
    assert cluster.install(lab, "m1").ok
    cluster.write_config(lab, "m1", {"token": "s3cret"})
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.systemd_service: {name: rke2-server, state: started,"
        " enabled: true}\n"
        "    - ansible.builtin.systemd_service: {name: rke2-server, state: started,"
        " enabled: true}\n      register: again\n"
        "    - ansible.builtin.assert: {that: [not again.changed]}\n"
    )
    inv = tmp_path / "inventory.json"
    inv.write_text(__import__("json").dumps(inventory(lab)))
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(inv), str(playbook)],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = lab.run("m1", "systemctl is-active rke2-server; systemctl is-enabled rke2-server")
    assert state.stdout.split() == ["active", "enabled"]


def test_rke2_cluster_lifecycle(lab_factory: LabFactory, rke2_artifact: Path) -> None:
    lab = lab_factory(["m1", "m2", "w1", "w2"])
    m1, m2 = lab.host("m1").ip, lab.host("m2").ip
    for h in lab.hosts:
        cluster.push_artifact(lab, h.name, rke2_artifact)

    # install.sh lays out the files, reloads systemd, starts nothing
    assert cluster.install(lab, "m1").ok
    layout = lab.run(
        "m1",
        "ls /usr/local/bin/rke2 /usr/local/bin/rke2-killall.sh "
        "/usr/local/bin/rke2-uninstall.sh /usr/local/lib/systemd/system/"
        "rke2-server.service /usr/local/lib/systemd/system/rke2-agent.service; "
        "systemctl is-enabled rke2-server; systemctl is-active rke2-server; "
        "test -e /var/lib/rancher/rke2/bin/kubectl || echo no-kubectl-yet",
    )
    assert layout.stdout.split()[-3:] == ["disabled", "inactive", "no-kubectl-yet"]

    # the initial master starts; 9345 answers over TLS from the manager
    cluster.write_config(lab, "m1", {"token": "s3cret", "tls-san": ["cluster.lab"], "cni": "canal"})
    assert cluster.start(lab, "m1").ok
    ca = cluster.supervisor_get(m1, "/cacerts")
    assert cluster.supervisor_get(m1, "/ping", ca_pem=ca) == "pong"
    token = cluster.token(lab, "m1")
    assert token.startswith("K10") and token.endswith("::server:s3cret")
    files = lab.run(
        "m1",
        "stat -c '%a %N' /var/lib/rancher/rke2/server/token "
        "/var/lib/rancher/rke2/server/node-token /etc/rancher/rke2/rke2.yaml; "
        "grep server: /etc/rancher/rke2/rke2.yaml",
        check=True,
    ).stdout
    assert "600 '/var/lib/rancher/rke2/server/token'" in files
    assert "node-token' -> '/var/lib/rancher/rke2/server/token'" in files
    assert "600 '/etc/rancher/rke2/rke2.yaml'" in files
    assert "server: https://127.0.0.1:6443" in files

    # a second server (full token) and an agent (password only) join
    for host, role, cfg in (
        ("m2", "server", {"server": f"https://{m1}:9345", "token": token}),
        ("w1", "agent", {"server": "https://m1:9345", "token": "s3cret"}),
    ):
        assert cluster.install(lab, host, role).ok
        cluster.write_config(lab, host, cfg)
        assert cluster.start(lab, host, role).ok
    assert cluster.node_status(lab, "m2") == {"m1": "Ready", "m2": "Ready", "w1": "Ready"}
    assert set(cluster.etcd_members(lab, "m2")) == {"m1", "m2"}
    assert cluster.kubectl(lab, "m1", "get nodes").stdout.split()[:5] == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
    ]

    # a wrong token never becomes ready: systemctl start blocks until stopped
    assert cluster.install(lab, "w2", "agent").ok
    cluster.write_config(lab, "w2", {"server": f"https://{m1}:9345", "token": "wrong"})
    blocked = subprocess.Popen(
        [*lab.ssh_args("w2"), "systemctl start rke2-agent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    assert blocked.poll() is None
    assert lab.run("w2", "systemctl is-active rke2-agent").stdout.strip() == "activating"
    assert lab.run("w2", "systemctl stop rke2-agent").ok
    blocked.kill()
    blocked.wait()
    assert "w2" not in cluster.node_status(lab, "m1")

    # etcd quorum: with one of two members unreachable the cluster cannot change
    lab.link_down("m1")
    res = cluster.kubectl(lab, "m2", "cordon w1")
    assert res.rc == 1 and "quorum" in res.stderr
    lab.link_up("m1")

    # drain and delete an agent; delete the initial master (its etcd member goes too)
    drain = "drain w1 --ignore-daemonsets --delete-emptydir-data --timeout=30s"
    assert cluster.kubectl(lab, "m2", drain).ok
    assert cluster.kubectl(lab, "m2", "delete node w1").ok
    assert cluster.kubectl(lab, "m2", "delete node m1").ok
    assert cluster.etcd_members(lab, "m2") == {"m2": m2}
    assert cluster.node_status(lab, "m2") == {"m2": "Ready"}

    # uninstall removes everything from the old master
    assert lab.run("m1", "/usr/local/bin/rke2-uninstall.sh").ok
    left = lab.run(
        "m1",
        "ls -d /usr/local/bin/rke2* /usr/local/lib/systemd/system/rke2* "
        "/etc/rancher/rke2 /var/lib/rancher/rke2 /usr/local/share/rke2 2>/dev/null; "
        "pgrep -x rke2; systemctl is-active rke2-server",
    )
    assert left.stdout.split() == ["inactive"]

    # a new agent joins through the second server
    cluster.write_config(lab, "w2", {"server": f"https://{m2}:9345", "token": token})
    assert cluster.start(lab, "w2", "agent").ok
    assert cluster.node_status(lab, "m2") == {"m2": "Ready", "w2": "Ready"}
