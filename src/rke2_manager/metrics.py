"""Prometheus metrics of this process (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

JOBS_FINISHED = Counter(
    "rke2m_jobs_finished_total", "Jobs this process's workers ended", ["operation", "status"]
)
REFUSALS = Counter(
    "rke2m_refusals_total",
    "Requests refused: busy cluster (409) or a guardrail (400)",
    ["reason"],
)
