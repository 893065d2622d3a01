"""The subset of kubectl's JSONPath templates the stand-in supports.

``{.a.b}``, ``{.items[*].metadata.name}``, ``{.items[0]}``, ``['key.with.dots']``,
``[?(@.type=="Ready")]``, ``{range .items[*]}...{end}`` and ``{"\\n"}`` literals.
"""

from __future__ import annotations

import json
import re
from typing import Any

STEP = re.compile(
    r"""\.\.?(?P<name>[A-Za-z0-9_\-/]+)
      | \[(?P<quoted>'[^']*'|"[^"]*")\]
      | \[(?P<index>\*|-?\d+)\]
      | \[\?\(@(?P<path>[^=!<>]+?)\s*(?P<op>==|!=)\s*(?P<value>[^)]*?)\)\]""",
    re.X,
)


def evaluate(expr: str, data: Any) -> list[Any]:
    """Values selected by one JSONPath expression (``.a[*].b``) from data."""
    expr = expr.strip()
    if expr in ("", ".", "$", "@"):
        return [data]
    expr = expr.lstrip("$@")
    current = [data]
    pos = 0
    while pos < len(expr):
        m = STEP.match(expr, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath at {expr[pos:]!r}")
        pos = m.end()
        current = [v for item in current for v in step(m, item)]
    return current


def step(m: re.Match[str], item: Any) -> list[Any]:
    key = m.group("name") or (m.group("quoted") or "")[1:-1]
    if key:
        return [item[key]] if isinstance(item, dict) and key in item else []
    index = m.group("index")
    if index is not None:
        if not isinstance(item, list):
            return list(item.values()) if isinstance(item, dict) and index == "*" else []
        if index == "*":
            return list(item)
        i = int(index)
        return [item[i]] if -len(item) <= i < len(item) else []
    want = m.group("value").strip().strip("'\"")
    out = []
    for element in item if isinstance(item, list) else []:
        found = [render(v) for v in evaluate(m.group("path"), element)]
        if (want in found) == (m.group("op") == "=="):
            out.append(element)
    return out


def render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def tokens(template: str) -> list[tuple[str, str]]:
    """Split a template into ("text", s) and ("expr", s) pieces."""
    out, pos = [], 0
    for m in re.finditer(r"\{((?:[^{}\"]|\"(?:\\.|[^\"\\])*\")*)\}", template):
        if m.start() > pos:
            out.append(("text", template[pos : m.start()]))
        out.append(("expr", m.group(1).strip()))
        pos = m.end()
    if pos < len(template):
        out.append(("text", template[pos:]))
    return out


def execute(template: str, data: Any) -> str:
    """Render a kubectl ``-o jsonpath=`` template against data."""
    return run(tokens(template), data)


def run(parts: list[tuple[str, str]], data: Any) -> str:
    out, i = [], 0
    while i < len(parts):
        kind, value = parts[i]
        if kind == "text":
            out.append(value)
        elif value.startswith('"'):
            out.append(json.loads(value, strict=False))
        elif value.startswith("range "):
            depth, j = 1, i + 1
            while j < len(parts) and depth:
                if parts[j] == ("expr", "end"):
                    depth -= 1
                elif parts[j][0] == "expr" and parts[j][1].startswith("range "):
                    depth += 1
                j += 1
            body = parts[i + 1 : j - 1]
            out += [run(body, item) for item in evaluate(value[6:], data)]
            i = j
            continue
        elif value != "end":
            out.append(" ".join(render(v) for v in evaluate(value, data)))
        i += 1
    return "".join(out)
