"""Ids are never reused: a script that stored a cluster or job id can never reach another."""

from __future__ import annotations

from fastapi.testclient import TestClient

from rke2_manager.db import Database


def body(name: str) -> dict[str, object]:
    return {"name": name, "nodes": [{"hostname": "m1", "ip": "127.0.1.1", "role": "server"}]}


def test_deleted_cluster_and_job_ids_are_not_handed_out_again(
    client: TestClient, db: Database
) -> None:
    first = client.post("/api/clusters", json=body("a")).json()["id"]
    last = client.post("/api/clusters", json=body("b")).json()["id"]
    job = client.post(f"/api/jobs/install/{last}").json()["job_id"]
    client.post(f"/api/jobs/{job}/cancel")
    assert client.delete(f"/api/clusters/{last}").status_code == 204
    again = client.post("/api/clusters", json=body("c")).json()["id"]
    assert again > last > first
    assert client.get(f"/api/clusters/{last}").status_code == 404
    assert client.get(f"/api/jobs/{job}").status_code == 404
    new_job = client.post(f"/api/jobs/install/{again}").json()["job_id"]
    assert new_job > job
