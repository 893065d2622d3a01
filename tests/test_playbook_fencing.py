"""Every step of the shipped playbooks that runs on a node checks the node's fence first.

A lint over the playbooks' YAML (no Ansible run, no root): the first task of every play raises
the fence; every raw step begins with ``{{ rke2m_fenced }}`` and lets a refusal fail it;
every Python module step goes through the fenced interpreter (nothing overrides it); a step
delegated to another node comes after a raise on that node. Mutations of the playbooks show
that each rule catches what it is for. Then the node-side scripts pass shellcheck as POSIX sh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2_manager.config import PACKAGE_DIR

PLAYBOOKS = PACKAGE_DIR / "playbooks"
FENCED = "{{ rke2m_fenced }}"
RAISE = "{{ rke2m_fence_raise }}"
FENCE_TASKS = "fence.yml"
#: Actions that run on the manager only (no SSH): they cannot change a node.
LOCAL = {"fail", "assert", "debug", "set_fact", "import_tasks", "include_tasks", "meta"}
#: Actions that run something on a node without its Python interpreter (so unfenced).
UNFENCED = {"script", "synchronize", "win_shell", "win_command"}
KEYWORDS = {
    "name", "args", "vars", "register", "when", "changed_when", "failed_when", "delegate_to",
    "delegate_facts", "loop", "loop_control", "no_log", "ignore_errors", "tags", "become",
    "become_user", "environment", "notify", "run_once", "until", "retries", "delay", "timeout",
    "block", "rescue", "always", "check_mode", "diff", "any_errors_fatal", "throttle",
    "connection", "with_items", "listen", "module_defaults", "collections", "debugger",
}  # fmt: skip


def action_of(task: dict[str, Any]) -> str:
    """The short name of a task's action (``ansible.builtin.raw`` -> ``raw``)."""
    actions = [k for k in task if k not in KEYWORDS]
    assert len(actions) == 1, f"cannot tell the action of {task}"
    return actions[0].rsplit(".", 1)[-1]


def tasks_in(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for task in items or []:
        if "block" in task:
            for part in ("block", "rescue", "always"):
                yield from tasks_in(task.get(part) or [])
        else:
            yield task


def first_var(expr: str) -> str:
    found = re.search(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)", expr)
    return found.group(1) if found else expr


def check_file(path: Path, tasks: list[dict[str, Any]], where: str) -> list[str]:
    """What is wrong with one list of tasks (a play's, or a task file's)."""
    problems: list[str] = []
    raised_on: set[str] = set()  # delegates a fence was raised on, by their variable
    registered_failures: dict[str, str] = {}  # module steps whose errors a later task shows
    for task in tasks_in(tasks):
        name = f"{where}: task {task.get('name')!r}"
        action = action_of(task)
        args = task[next(k for k in task if k not in KEYWORDS)]
        if "ansible_python_interpreter" in (task.get("vars") or {}):
            problems.append(f"{name} overrides the fenced Python interpreter")
        if "connection" in task:
            problems.append(f"{name} sets its own connection")
        if action in ("import_tasks", "include_tasks"):
            if Path(str(args)).name == FENCE_TASKS:
                on = (task.get("vars") or {}).get("rke2m_fence_on")
                if on:
                    raised_on.add(first_var(str(on)))
            continue
        if task.get("when") and "is failed" in str(task["when"]):
            registered_failures.pop(str(task["when"]).split()[0], None)
        if action in LOCAL:
            continue
        if action in UNFENCED:
            problems.append(f"{name} runs {action} on a node, which no fence check precedes")
            continue
        delegate = task.get("delegate_to")
        is_raise = action == "raw" and str(args).strip() == RAISE
        if delegate and not is_raise and first_var(str(delegate)) not in raised_on:
            problems.append(f"{name} runs on {delegate} without raising the fence there first")
        if action == "raw":
            text = str(args)
            if is_raise:
                if path.name != FENCE_TASKS:
                    problems.append(f"{name} raises the fence outside tasks/{FENCE_TASKS}")
                continue
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if not lines or lines[0] != FENCED:
                problems.append(f"{name} is a raw step that does not begin with {FENCED}")
            if not (task.get("vars") or {}).get("rke2m_step"):
                problems.append(f"{name} does not name its step (vars: rke2m_step)")
            failed_when = task.get("failed_when")
            if failed_when is not None and "rke2m_refused_rc" not in str(failed_when):
                problems.append(f"{name}: its failed_when would hide a refusal by the fence")
            if task.get("ignore_errors"):
                problems.append(f"{name}: ignore_errors would hide a refusal by the fence")
            continue
        # a Python module: the fenced interpreter checks the fence
        if task.get("ignore_errors"):
            if not task.get("register"):
                problems.append(f"{name}: ignore_errors would hide a refusal by the fence")
            else:
                registered_failures[str(task["register"])] = name
    for reg, name in registered_failures.items():
        problems.append(f"{name}: ignore_errors, and no later task fails when {reg} is failed")
    return problems


def check_playbooks(root: Path) -> list[str]:
    """Every breach of the fencing rules in the playbooks under ``root``."""
    problems: list[str] = []
    group_vars = yaml.safe_load((root / "group_vars" / "all.yml").read_text())
    interpreter = str(group_vars.get("ansible_python_interpreter", ""))
    if "/var/lib/rke2-manager/bin/rke2m-python." not in interpreter:
        problems.append("group_vars: ansible_python_interpreter is not the fenced one")
    fenced = str(group_vars.get("rke2m_fenced", "")).strip()
    if not fenced.endswith(". /var/lib/rke2-manager/bin/rke2m-step"):
        problems.append("group_vars: rke2m_fenced does not source rke2m-step")
    scripts = ["rke2m-fence.sh", "rke2m-step.sh", "rke2m_watch.py"]
    raise_cmd = str(group_vars.get("rke2m_fence_raise", "")).replace(
        "rke2m_fence_sh", str(group_vars.get("rke2m_fence_sh"))
    )
    places = [raise_cmd.find(f"/files/{s}") for s in scripts]
    if -1 in places or places != sorted(places):
        problems.append(f"group_vars: rke2m_fence_raise does not install {scripts} in order")
    for playbook in sorted(root.glob("*.yml")):
        for i, play in enumerate(yaml.safe_load(playbook.read_text())):
            where = f"{playbook.name} play {i + 1} ({play.get('name')})"
            if "ansible_python_interpreter" in (play.get("vars") or {}):
                problems.append(f"{where} overrides the fenced Python interpreter")
            if "connection" in play:
                problems.append(f"{where} sets its own connection")
            tasks = play.get("tasks") or []
            if set(play) & {"pre_tasks", "roles", "handlers", "post_tasks"}:
                problems.append(f"{where} has steps outside its tasks, which this check misses")
            first = tasks[0] if tasks else {}
            if Path(str(first.get("ansible.builtin.import_tasks", ""))).name != FENCE_TASKS:
                problems.append(f"{where}: its first task does not raise the fence")
            problems += check_file(playbook, tasks, where)
    for task_file in sorted((root / "tasks").glob("*.yml")):
        problems += check_file(task_file, yaml.safe_load(task_file.read_text()), task_file.name)
    return problems


def test_every_step_that_runs_on_a_node_checks_the_fence_first() -> None:
    assert check_playbooks(PLAYBOOKS) == []


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, (path, old)
        file.write_text(text.replace(old, new, 1))

    return mutate


MUTATIONS = {
    "a raw step without the check": (
        _replace("tasks/start.yml", "    {{ rke2m_fenced }}\n", ""),
        "does not begin with {{ rke2m_fenced }}",
    ),
    "the check after the first command": (
        _replace(
            "tasks/start.yml",
            "    {{ rke2m_fenced }}\n    unit=",
            "    unit={{ rke2m_unit }}\n    {{ rke2m_fenced }}\n    unit=",
        ),
        "does not begin with {{ rke2m_fenced }}",
    ),
    "a refusal swallowed": (
        _replace("tasks/start.yml", "rke2m_start.rc | default(0) == rke2m_refused_rc", "false"),
        "would hide a refusal",
    ),
    "a play without a raise": (
        _replace(
            "scale_add_workers.yml",
            "    - name: Raise the fence\n      ansible.builtin.import_tasks: tasks/fence.yml\n",
            "",
        ),
        "its first task does not raise the fence",
    ),
    "a delegate without a raise": (
        _replace("tasks/remove.yml", 'rke2m_fence_on: "{{ rke2m_api_host }}"', "{}"),
        "without raising the fence there first",
    ),
    "an interpreter of its own": (
        _replace(
            "tasks/config.yml",
            "  no_log: true\n",
            "  no_log: true\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n",
        ),
        "overrides the fenced Python interpreter",
    ),
    "a script step": (
        _replace(
            "tasks/config.yml",
            "- name: Check that",
            "- name: Run\n  ansible.builtin.script: x.sh\n\n- name: Check that",
        ),
        "runs script on a node",
    ),
    "an unfenced interpreter": (
        _replace("group_vars/all.yml", "/var/lib/rke2-manager/bin/rke2m-python.", "python3 #"),
        "ansible_python_interpreter is not the fenced one",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_check_finds_a_step_that_escapes_the_fence(mutation: str, tmp_path: Path) -> None:
    root = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, root)
    mutate, expected = MUTATIONS[mutation]
    mutate(root)
    problems = check_playbooks(root)
    assert any(expected in p for p in problems), problems


def test_the_node_side_scripts_pass_shellcheck_as_posix_sh() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        reason = "shellcheck is not installed (apt-get install shellcheck)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        print(f"skipping: {reason}")
        pytest.skip(reason)
    scripts = sorted((PLAYBOOKS / "files").glob("*.sh"))
    assert scripts
    out = subprocess.run(
        [shellcheck, "--shell=sh", "--external-sources", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
