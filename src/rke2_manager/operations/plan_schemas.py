"""The body of a dry run (``?dry_run=true``): the plan of a job-starting call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rke2_manager.jobs.schemas import JobNode
from rke2_manager.validation import example_of


class GuardrailVerdict(BaseModel):
    """What one guardrail says about the call."""

    guardrail: str = Field(
        description="G1 bootstrap, G2 quorum and confirmation, G3 servers before agents, "
        "G4 unique hostnames and IPs",
        examples=["G1"],
    )
    verdict: Literal["pass", "warn", "refused"] = Field(
        description="pass; warn (it lets the call through with the warnings in messages); "
        "refused (the call would be refused with the message in messages)",
        examples=["pass"],
    )
    messages: list[str] = Field(
        description="The exact refusal or warning texts; empty for pass (G3 explains the order)",
        examples=[[]],
    )


class PlannedJob(BaseModel):
    """One job the call would create, in the order the jobs run."""

    step: int = Field(description="1 for the job that runs first", examples=[1])
    operation: str = Field(
        description="install, scale_add_masters, scale_add_workers, scale_remove_masters, "
        "scale_remove_workers, or a day-2 operation",
        examples=["scale_add_masters"],
    )
    status: str = Field(
        description="What the job would be right after the call: running (it gets the lock) "
        "or queued (it waits for the lock, or for the step before it)",
        examples=["running"],
    )
    nodes: list[JobNode] = Field(
        description="The nodes it would work on (id null for nodes it would create)",
        examples=[[{"id": None, "hostname": "m4", "ip": "10.0.0.14", "role": "server"}]],
    )
    waits_for: int | None = Field(
        description="The step that must succeed before this one starts (G3: the servers' job "
        "before the agents' job); null when it waits for nothing but the lock",
        examples=[None, 1],
    )
    preflight_skip: list[str] | None = Field(
        description="null: the job runs no preflight checks; else it runs them on its nodes "
        "before changing anything, and these (skip_preflight) do not stop it",
        examples=[[], ["swap"]],
    )


class PlanRefusal(BaseModel):
    """The problem the real call would answer (RFC 9457, as the real response's body)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="urn:rke2-manager:guardrail, urn:rke2-manager:cluster-busy or about:blank",
        examples=["urn:rke2-manager:guardrail"],
    )
    title: str = Field(description="The status's reason phrase", examples=["Bad Request"])
    status: int = Field(description="The status the real call would answer", examples=[400])
    detail: str = Field(
        description="The exact message the real call would answer",
        examples=["Node with IP '10.0.0.5' already exists in cluster"],
    )


class OperationPlan(BaseModel):
    """200 body of a dry run: what the call would do, decided exactly as the real call decides."""

    dry_run: Literal[True] = Field(
        True, description="Always true: nothing was changed", examples=[True]
    )
    cluster_id: int = Field(description="The cluster", examples=[1])
    would_succeed: bool = Field(
        description="true: the real call would be accepted (202) as planned; false: it would be "
        "refused with refusal",
        examples=[True],
    )
    status: str | None = Field(
        description="The first job's status after the real call: running or queued; null if "
        "refused",
        examples=["running"],
    )
    position: int | None = Field(
        description="The first job's place in the cluster's queue when it would be queued",
        examples=[None, 1],
    )
    jobs: list[PlannedJob] = Field(
        description="The jobs the call would create, in the order they run (empty if refused)",
        examples=[[example_of(PlannedJob)]],
    )
    nodes: list[JobNode] = Field(
        description="Every node the jobs would work on, in the order of the jobs",
        examples=[[{"id": None, "hostname": "m4", "ip": "10.0.0.14", "role": "server"}]],
    )
    sequenced: bool = Field(
        description="G3: servers and agents would be split into two jobs, servers first",
        examples=[False],
    )
    guardrails: list[GuardrailVerdict] = Field(
        description="The verdict of each guardrail that applies to this call",
        examples=[[example_of(GuardrailVerdict)]],
    )
    warnings: list[str] = Field(
        description="The warnings the real call would answer (and store on its jobs)",
        examples=[[]],
    )
    refusal: PlanRefusal | None = Field(
        description="The problem the real call would answer instead; null when it would succeed",
        examples=[None],
    )
