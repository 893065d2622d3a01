"""What can go wrong in a client command, and the exit status each gives (docs/cli.md)."""

from __future__ import annotations

from typing import Any

OK = 0
#: The operation ran and failed (job failed or canceled), or apply did not converge.
FAILED = 1
#: Bad flags, a bad cluster file, or input the API refused as invalid (400/413/422).
USAGE = 2
#: The API refused: a guardrail (400 guardrail) or a conflict such as a busy cluster (409).
REFUSED = 3
#: No or a wrong token (401), or a role too low (403).
AUTH = 4
#: No such cluster, node or job (404).
NOT_FOUND = 5
#: The API cannot be reached, or failed (5xx).
UNAVAILABLE = 6
#: A bug in the client (an answer it did not expect): reported in one line, please report it.
INTERNAL = 70
#: Interrupted (Ctrl-C); a job already started goes on on the server.
INTERRUPTED = 130


class ClientError(Exception):
    """An error to print (``message``) and exit with ``code``."""

    code = FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    code = USAGE


class Unavailable(ClientError):
    code = UNAVAILABLE


class OperationFailed(ClientError):
    code = FAILED


class Refused(ClientError):
    """Refused before anything was asked of the API (e.g. a plan's first step)."""

    code = REFUSED


class ApiError(ClientError):
    """A problem-details answer from the API; ``message`` is its ``detail``."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail")
        super().__init__(str(detail) if detail else f"HTTP {status}")
        self.status, self.problem = status, problem
        self.code = exit_code(status, problem)


def exit_code(status: int, problem: dict[str, Any]) -> int:
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status == 409 or problem.get("type") == "urn:rke2-manager:guardrail":
        return REFUSED
    if status >= 500:
        return UNAVAILABLE
    return USAGE
