"""Domain errors: each carries its HTTP status and renders as RFC 9457 problem details."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can cause; ``detail`` is the exact user-facing message."""

    status_code = 400
    title = "Bad Request"
    type = "about:blank"

    def __init__(self, detail: str, **extras: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extras = extras

    def problem(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
            **self.extras,
        }


class InvalidRequest(DomainError):
    status_code = 422
    title = "Unprocessable Content"


class Unauthorized(DomainError):
    """No credentials, or credentials that name no active token."""

    status_code = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this (role too low, cross-site request)."""

    status_code = 403
    title = "Forbidden"


class NotFound(DomainError):
    status_code = 404
    title = "Not Found"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"


class ClusterBusy(Conflict):
    """The cluster lock is held by another job."""

    type = "urn:rke2-manager:cluster-busy"

    def __init__(self, operation: str, job_id: int | None) -> None:
        super().__init__(
            f"Cluster is busy with operation '{operation}' (job {job_id}). Please wait.",
            operation=operation,
            job_id=job_id,
        )


class GuardrailViolation(DomainError):
    """An operation was refused because it would break the cluster (G1–G4)."""

    status_code = 400
    type = "urn:rke2-manager:guardrail"

    def __init__(self, guardrail: str, detail: str) -> None:
        super().__init__(detail, guardrail=guardrail)
        self.guardrail = guardrail


class LockLost(Exception):
    """A job's fencing token no longer matches the cluster's: another holder owns the lock."""
