"""The OpenAPI document is complete: every schema property is described with an example, every
route documents the 4xx it can answer as problem details, and the documented node name and
address patterns agree with what the validators accept."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from rke2_manager.api.app import create_app
from rke2_manager.api.problems import PROBLEM, Problem
from rke2_manager.audit.router import AuditOut
from rke2_manager.clusters.responses import ClusterOut, LockOut, NodeOut, RKE2Out, SSHOut
from rke2_manager.clusters.schemas import ClusterCreate, ClusterUpdate, RKE2In, SSHIn
from rke2_manager.config import Settings
from rke2_manager.jobs.schemas import (
    HostProgress,
    JobLog,
    JobNode,
    JobOut,
    LogLine,
    OperationAccepted,
    QueuedJob,
)
from rke2_manager.operations.admin import ForceUnlockIn
from rke2_manager.tokens.schemas import TokenCreate, TokenCreated, TokenOut
from rke2_manager.validation import (
    HOSTNAME_PATTERN,
    IPV4_PATTERN,
    NodeIn,
    NodeRef,
    NodeRefsIn,
    NodesIn,
    check_hostname,
    check_ip,
    example_of,
)
from tests.factories import TEST_SECRET_KEY, lock_cluster, make_cluster

MUTATING = {"post", "put", "patch", "delete"}
#: What every mutating route can answer: a bad Host or guardrail (400), no or unknown token
#: (401), a role too low or a cross-site browser (403), a body too large (413), invalid input
#: (422); with path parameters also 404; and 409 unless the route changes nothing a lock or a
#: unique name guards.
MUTATING_ERRORS = {400, 401, 403, 413, 422}
NO_CONFLICT = {("delete", "/api/tokens/{ref}")}  # revoking is idempotent on a unique row
PUBLIC = {"/healthz", "/readyz"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

MODELS: list[type[BaseModel]] = [
    AuditOut,
    ClusterCreate,
    ClusterOut,
    ClusterUpdate,
    ForceUnlockIn,
    HostProgress,
    JobLog,
    JobNode,
    JobOut,
    LockOut,
    LogLine,
    NodeIn,
    NodeOut,
    NodeRef,
    NodeRefsIn,
    NodesIn,
    OperationAccepted,
    Problem,
    QueuedJob,
    RKE2In,
    RKE2Out,
    SSHIn,
    SSHOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        database_url=f"sqlite:///{tmp}/unused.db",  # never opened
        data_dir=tmp / "data",
        secret_key=TEST_SECRET_KEY,
        _env_file=None,  # type: ignore[call-arg]
    )
    return create_app(settings, run_migrations=False, start_worker=False).openapi()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def _properties(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of ``schema``, also of objects nested inline in it."""
    for name, prop in schema.get("properties", {}).items():
        yield f"{where}.{name}", prop
        yield from _properties(prop, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _properties(schema[key], where)
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from _properties(branch, where)


def test_every_schema_property_has_a_description_and_an_example(
    document: dict[str, Any],
) -> None:
    missing = [
        f"{where}: {', '.join(lack)}"
        for name, schema in document["components"]["schemas"].items()
        for where, prop in _properties(schema, name)
        if (
            lack := [
                *(["description"] if not prop.get("description") else []),
                *(["example"] if not (prop.get("examples") or "example" in prop) else []),
            ]
        )
    ]
    assert not missing, "\n".join(missing)


def test_every_parameter_has_a_description_and_an_example(document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path} {param['name']}"
        for method, path, operation in _operations(document)
        for param in operation.get("parameters", [])
        if not (param.get("description") or param["schema"].get("description"))
        or not (param.get("examples") or param["schema"].get("examples"))
    ]
    assert not missing, "\n".join(missing)


def test_fastapis_validation_error_schema_is_never_documented(document: dict[str, Any]) -> None:
    """422s are problem details too, not FastAPI's default ``HTTPValidationError``."""
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_example_is_valid(model: type[BaseModel]) -> None:
    """Each field's examples, in an otherwise example body, pass the model's validation."""
    body = example_of(model)
    assert set(body) == set(model.model_fields), "a field has no example"
    model.model_validate(body)
    for name, field in model.model_fields.items():
        for example in field.examples or []:
            model.model_validate({**body, name: example})


def test_every_documented_error_is_a_problem(document: dict[str, Any]) -> None:
    wrong = [
        f"{method.upper()} {path} {status}"
        for method, path, operation in _operations(document)
        for status, response in operation["responses"].items()
        if status.startswith("4") and response.get("content") != {PROBLEM: {"schema": PROBLEM_REF}}
    ]
    assert not wrong, wrong


def test_every_route_documents_its_errors(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(document):
        if path in PUBLIC:
            continue
        documented = {int(s) for s in operation["responses"] if s.startswith("4")}
        required: set[int] = set()
        if path.startswith("/api/"):
            required |= {400, 401, 403}  # any route: the Host guard, then authentication
        if operation.get("parameters") or "requestBody" in operation:
            required.add(422)
        if "{" in path:
            required.add(404)
        if method in MUTATING:
            required |= MUTATING_ERRORS
            if (method, path) not in NO_CONFLICT:
                required.add(409)
        if lack := required - documented:
            missing.append(f"{method.upper()} {path}: {sorted(lack)}")
    assert not missing, "\n".join(missing)


def test_problem_schema_has_the_rfc_9457_members(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert problem.get("additionalProperties", True) is not False  # extras allowed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rendered_errors_match_the_problem_schema(client: TestClient, db: Any) -> None:
    """The bodies the handlers actually send validate as the documented Problem, extras
    included (only documented extras)."""
    cluster = make_cluster(db, "prod", [("m1", "127.0.10.1", "server", "PENDING")])
    lock_cluster(db, cluster)
    documented = set(Problem.model_fields)
    requests = [
        ("GET", "/api/clusters/999", None, 404),
        ("POST", f"/api/clusters/{cluster}/scale/add", {"nodes": [{"hostname": "w1"}]}, 422),
        (
            "POST",
            f"/api/clusters/{cluster}/scale/add",
            {"nodes": [{"hostname": "w1", "ip": "127.0.10.9", "role": "agent"}]},
            409,
        ),
        ("POST", "/api/clusters", {"name": "prod", "nodes": [_NODE]}, 409),
    ]
    for method, url, body, status in requests:
        response = client.request(method, url, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        payload = response.json()
        Problem.model_validate(payload)
        assert set(payload) <= documented, f"undocumented members: {set(payload) - documented}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rendered_guardrail_refusal_matches_the_problem_schema(client: TestClient, db: Any) -> None:
    cluster = make_cluster(db, "new", [("n1", "127.0.12.1", "server", "PENDING")])
    response = client.post(
        f"/api/clusters/{cluster}/scale/add",
        json={"nodes": [{"hostname": "w1", "ip": "127.0.12.9", "role": "agent"}]},
    )
    assert response.status_code == 400, response.text
    payload = response.json()
    Problem.model_validate(payload)
    assert set(payload) <= set(Problem.model_fields)
    assert payload["guardrail"]


_NODE = {"hostname": "m1", "ip": "10.0.0.1", "role": "server"}


# --- the documented patterns accept only what the validators accept -----------------------


@settings(max_examples=300, deadline=None)
@given(st.from_regex(HOSTNAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 253))
def test_names_matching_the_hostname_pattern_are_accepted(name: str) -> None:
    assert check_hostname(name) == name.lower().rstrip(".")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(IPV4_PATTERN, fullmatch=True).filter(lambda s: s != "0.0.0.0"))
def test_addresses_matching_the_ipv4_pattern_are_accepted(address: str) -> None:
    assert check_ip(address) == address


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_unicast_ipv4_addresses_match_the_pattern(address: ipaddress.IPv4Address) -> None:
    text = str(address)
    accepted = not (address.is_unspecified or address.is_multicast)
    assert accepted == (re.fullmatch(IPV4_PATTERN, text) is not None and text != "0.0.0.0")


@pytest.mark.parametrize(
    "name", ["w1", "worker-01", "node1.example.com", "a" * 63, ".".join(["a" * 63] * 3) + ".b"]
)
def test_valid_hostnames_match_the_pattern(name: str) -> None:
    assert re.fullmatch(HOSTNAME_PATTERN, name)
    assert check_hostname(name) == name


@pytest.mark.parametrize("name", ["", "-w1", "w1-", "w_1", "a" * 64, "a..b", "w1/x", "w1 x", "ü1"])
def test_invalid_hostnames_do_not_match_the_pattern(name: str) -> None:
    assert not re.fullmatch(HOSTNAME_PATTERN, name)
    with pytest.raises(ValueError):
        check_hostname(name)
