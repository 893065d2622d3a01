"""Who is calling, and may they: bearer tokens with roles, and protected mode.

Every route declares its role with one of ``VIEWER``, ``OPERATOR``, ``ADMIN`` or ``PUBLIC``
(``tests/test_auth.py`` walks every route of the app to prove it). Roles include the ones
below them: viewer (read) < operator (start operations, cancel) < admin (force unlock, tokens,
delete clusters, kubeconfig, host keys, audit log).

**Protected mode**: while no token exists, only loopback clients are served (as ``local``,
with every role); anyone else gets 401 saying how to create a token. A request that came
through a proxy (``Forwarded``/``X-Forwarded-For``) is not treated as loopback.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from rke2_manager.api.deps import CtxDep
from rke2_manager.errors import Forbidden, Unauthorized
from rke2_manager.models import ApiRole, utcnow
from rke2_manager.tokens import service as tokens

log = logging.getLogger(__name__)

LOCAL_ACTOR = "local"
PROTECTED_MODE = (
    "rke2-manager is in protected mode: no API token exists yet, so only loopback clients are "
    "served. Create one on the server with `rke2-manager token create --name NAME --role admin` "
    "and send it as `Authorization: Bearer <token>`."
)
_PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client address) is a loopback address."""
    try:
        return host is not None and ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _direct_loopback(request: Request) -> bool:
    proxied = any(k in _PROXY_HEADERS for k, _ in request.scope.get("headers", ()))
    return not proxied and is_loopback(request.client.host if request.client else None)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("The Authorization header must be `Bearer <token>`")
    return value.strip()


def authenticate(request: Request, ctx: CtxDep) -> tuple[str, ApiRole]:
    """The caller's actor name and role; Unauthorized if they cannot be established."""
    token = _bearer(request)
    with ctx.db.read_session() as session:
        if token is not None:
            row = tokens.authenticate(session, token)
            if row is None:
                raise Unauthorized("The API token is unknown or revoked")
            actor, role, token_id = row.name, ApiRole(row.role), row.id
            seen = row.last_used_at
            stale = seen is None or seen < utcnow() - tokens.TOUCH_EVERY
        elif tokens.any_active(session):
            raise Unauthorized("Authentication required: send `Authorization: Bearer <token>`")
        elif _direct_loopback(request):
            return LOCAL_ACTOR, ApiRole.ADMIN
        elif ctx.settings.insecure_no_auth:
            host = request.client.host if request.client else "unknown"
            return f"insecure-no-auth@{host}", ApiRole.ADMIN
        else:
            raise Unauthorized(PROTECTED_MODE)
    if stale:
        with ctx.db.transaction() as session:
            tokens.touch(session, token_id)
    return actor, role


def require(role: ApiRole) -> Callable[..., str]:
    """A dependency that admits callers with at least ``role`` and returns their actor name."""

    def dependency(request: Request, ctx: CtxDep) -> str:
        actor, has = authenticate(request, ctx)
        request.state.actor = actor  # known from here on: a refusal is audited under it
        if has.rank < role.rank:
            raise Forbidden(
                f"This needs the '{role.value}' role; the token '{actor}' has '{has.value}'"
            )
        return actor

    dependency.required_role = role  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{role.value}"
    return dependency


def public() -> None:
    """Declares a route open to anyone who reaches the service (health probes, API docs)."""


public.required_role = None  # type: ignore[attr-defined]

ViewerActor = Annotated[str, Depends(require(ApiRole.VIEWER))]
OperatorActor = Annotated[str, Depends(require(ApiRole.OPERATOR))]
AdminActor = Annotated[str, Depends(require(ApiRole.ADMIN))]
VIEWER = Depends(require(ApiRole.VIEWER))
PUBLIC = Depends(public)
