"""A run's inputs: files only, 0600, every value untrusted by Ansible, nothing on a command line."""

from __future__ import annotations

import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template

from rke2_manager.config import PACKAGE_DIR
from rke2_manager.execution import ansible_service
from rke2_manager.execution.ansible_service import RunSpec, run_playbook
from rke2_manager.execution.run_inputs import (
    HostSpec,
    dump,
    learned_host_keys,
    write_run_inputs,
)
from rke2_manager.execution.ssh import ControlDirError, control_path

PAYLOADS = [
    "{{ lookup('pipe', 'touch MARKER') }}",
    "x={% set _ = lookup('pipe', 'touch MARKER') %}",
    "{{ lookup('file', '/etc/hostname') }}",
]
TRICKY = ["", "on", "true", "0755", "null", "1e3", "~", "a: b", "é😀\u2028\n\t\"\\'#"]


def strings(value: Any) -> list[Any]:
    """Every string in value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def load_as_ansible(path: Path) -> Any:
    """The file as ansible-playbook loads ``-e @path`` and YAML inventories (trusted source)."""
    return DataLoader().load_from_file(str(path), cache="none", trusted_as_template=True)


def test_every_string_loads_untrusted_and_keeps_its_type(tmp_path: Path) -> None:
    data = {
        "rke2_config": {"cni": PAYLOADS[0], "tls-san": [*PAYLOADS, 3, True], "n": None},
        "tricky": TRICKY,
        PAYLOADS[1]: 1.5,
        "big": 1e16,
    }
    path = tmp_path / "vars.yml"
    path.write_text(dump(data))
    loaded = load_as_ansible(path)
    assert loaded == data  # "" stays "", "on" stays a string, 1e16 a float
    assert all(isinstance(v, str) for v in loaded["tricky"])
    found = strings(loaded)
    assert len(found) == len(strings(data)) > 10
    assert not [s for s in found if is_trusted_as_template(s)]
    # the control: the same data as plain YAML would be templated by Ansible
    path.write_text(yaml.safe_dump(data))
    assert all(is_trusted_as_template(s) for s in strings(load_as_ansible(path)))


def test_dump_refuses_objects() -> None:
    with pytest.raises(TypeError):
        dump({"a": object()})
    with pytest.raises(TypeError):
        dump({"a": float("nan")})


HOSTS = [
    HostSpec("m1", "10.0.0.1", "server", True, True, "ssh-ed25519 AAAApinned"),
    HostSpec("w1", "10.0.0.4", "agent", True),
]


def test_files_are_private_and_hold_the_pins(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    known = write_run_inputs(
        run,
        HOSTS,
        {"rke2m_token": "tok", "rke2_config": {"a": "b"}},
        ssh_user="root",
        ssh_port=2222,
        host_key_checking=True,
    )
    files = [run / "inventory" / "hosts.yml", run / "env" / "extravars", known]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (run / "inventory", run / "env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert known.read_text() == "[10.0.0.1]:2222 ssh-ed25519 AAAApinned\n"
    inv = load_as_ansible(files[0])["all"]
    assert inv["hosts"]["m1"]["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=yes"
    assert inv["hosts"]["w1"]["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=accept-new"
    assert inv["vars"] == {"ansible_user": "root", "ansible_port": 2222, "ansible_become": False}
    assert list(inv["children"]["rke2_initial_master"]["hosts"]) == ["m1"]
    assert load_as_ansible(files[1]) == {"rke2m_token": "tok", "rke2_config": {"a": "b"}}
    with pytest.raises(FileExistsError):  # never written over (or through a planted link)
        write_run_inputs(run, HOSTS, {}, ssh_user="root", ssh_port=22, host_key_checking=True)

    # SSH appended w1's key on first contact: learned for w1 only (m1 was pinned)
    with known.open("a") as fh:
        fh.write("[10.0.0.4]:2222 ssh-ed25519 AAAAnew\n[10.0.0.1]:2222 ssh-rsa AAAAother\n")
    assert learned_host_keys(known, HOSTS, 2222) == {"w1": "ssh-ed25519 AAAAnew"}


def test_without_host_key_checking_nothing_is_pinned(tmp_path: Path) -> None:
    known = write_run_inputs(
        tmp_path, HOSTS, {}, ssh_user="deploy", ssh_port=22, host_key_checking=False
    )
    assert known.read_text() == ""
    inv = load_as_ansible(tmp_path / "inventory" / "hosts.yml")["all"]
    assert "ansible_ssh_common_args" not in inv["hosts"]["m1"]
    assert inv["vars"]["ansible_become"] is True


def test_control_path_is_the_runs_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one run's connections are never another run's (of this cluster or another)
    a, b = control_path(7, "job3-aaaa"), control_path(7, "job4-bbbb")
    assert a != b and control_path(8, "job3-aaaa") != a and control_path(7, "job3-aaaa") == a
    assert "/c7-" in a and a.endswith("-%C") and "job3" not in a
    assert len(a) - 2 + 40 < 100  # %C expands to 40 characters; sockets need < 108
    assert stat.S_IMODE(Path(a).parent.stat().st_mode) == 0o700
    long_tmp = tmp_path / ("t" * 60)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    with pytest.raises(ControlDirError, match="too long"):
        control_path(7, "job3-aaaa")


LOCAL_PLAY = """\
- hosts: rke2_targets
  gather_facts: false
  connection: local
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    joined: "{{ rke2_artifact_dir ~ '/x' }}"
    globbed: "{{ query('ansible.builtin.fileglob', rke2_artifact_dir ~ '/*') }}"
  tasks:
    - name: write config.yaml with the shipped template
      ansible.builtin.template:
        src: config.yaml.j2
        dest: "{{ out }}/config.yaml"
      vars:
        rke2m_join: true
      no_log: true
    - name: interpolate into a shell command
      ansible.builtin.raw: printf '%s\\n' {{ joined | quote }} > {{ (out ~ '/raw') | quote }}
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: "{{ globbed | length }}"}
"""


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    """The shipped playbooks (group_vars, templates) plus a local test play."""
    path = tmp_path / "playbooks"
    shutil.copytree(PACKAGE_DIR / "playbooks", path)
    (path / "local.yml").write_text(LOCAL_PLAY)
    return path


def test_a_run_renders_no_value_and_puts_none_on_the_command_line(
    tmp_path: Path, playbooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / f"marker-{uuid.uuid4().hex}"
    payloads = [p.replace("MARKER", str(marker)) for p in PAYLOADS]
    out = tmp_path / "out"
    out.mkdir()
    token, s3_secret = f"tok-{uuid.uuid4().hex}", f"s3-{uuid.uuid4().hex}"
    big = "b" * 200_000  # more than one argument may hold (128 KiB): only a file carries it
    config = {"cni": payloads[0], "node-label": payloads, "token": "not-this", "x": "on"}
    config["big"] = big
    spec = RunSpec(
        playbook=playbooks / "local.yml",
        hosts=[HostSpec("m1", "127.0.0.1", "server", True, True)],
        run_root=tmp_path / "data" / "runs",
        cluster_id=1,
        extravars={
            "out": str(out),
            "rke2_artifact_dir": payloads[1],
            "rke2_registration_address": payloads[0],
            "rke2_fixed_registration_address": payloads[0],
            "rke2_config": config,
            "rke2_config_secrets": {"etcd-s3-secret-key": s3_secret, "token": "nor-this"},
            "rke2m_token": token,
        },
        secret_values=[token, s3_secret],
    )
    runners: list[Any] = []
    real_run = ansible_runner.run

    def spy(**kwargs: Any) -> Any:
        assert "extravars" not in kwargs and "inventory" not in kwargs and "cmdline" not in kwargs
        runners.append(real_run(**kwargs))
        return runners[-1]

    monkeypatch.setattr(ansible_service.ansible_runner, "run", spy)
    monkeypatch.setenv("RKE2M_SECRET_KEY", master := f"master-{uuid.uuid4().hex}")
    lines: list[str] = []
    outcome = run_playbook(spec, lambda _: None, lines.extend, lambda: False)
    assert outcome.status == "successful", "\n".join(lines)

    assert not marker.exists()
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["cni"] == payloads[0] and written["node-label"] == payloads
    assert written["x"] == "on"  # still the string RKE2 was given
    assert written["big"] == big
    assert written["token"] == token  # the manager's keys win over config and secrets
    assert written["etcd-s3-secret-key"] == s3_secret
    assert written["tls-san"] == [payloads[0]]
    assert written["server"] == f"https://{payloads[0]}:9345"
    assert (out / "raw").read_text() == payloads[1] + "/x\n"

    (runner,) = runners
    command = " ".join(runner.config.command)
    private = Path(runner.config.private_data_dir)
    assert f"-e @{private}/env/extravars" in command and f"-i {private}/inventory" in command
    env = " ".join(f"{k}={v}" for k, v in runner.config.env.items())
    for secret in (token, s3_secret, master, payloads[0], payloads[1]):
        assert secret not in command and secret not in env
    assert "StrictHostKeyChecking=no" not in env and "/c1-" in env
    # the private dir lived under <data dir>/runs (0700) and is gone
    assert private.parent == spec.run_root and not private.exists()
    assert stat.S_IMODE(spec.run_root.stat().st_mode) == 0o700
    assert token not in "\n".join(lines) and s3_secret not in "\n".join(lines)
