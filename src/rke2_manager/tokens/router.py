"""Token endpoints (admin): list, create (the token is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from rke2_manager.api import problems
from rke2_manager.api.auth import AdminActor
from rke2_manager.api.deps import CtxDep
from rke2_manager.tokens import service
from rke2_manager.tokens.schemas import TokenCreate, TokenCreated, TokenOut, token_out

router = APIRouter(prefix="/api/tokens", tags=["tokens"])
TokenRef = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="token id or name",
        examples=["ci-deployer"],
    ),
]


@router.get("", response_model=list[TokenOut], responses=problems.responses(400, 401, 403))
def list_tokens(ctx: CtxDep, actor: AdminActor) -> list[TokenOut]:
    """Every token ever created, revoked ones included (never the tokens themselves)."""
    with ctx.db.read_session() as session:
        return [token_out(t) for t in service.list_tokens(session)]


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses=problems.responses(400, 401, 403, 409, 413, 422),
)
def create_token(body: TokenCreate, ctx: CtxDep, actor: AdminActor) -> TokenCreated:
    """Create a token; the response is the only time it is shown. 409 if the name is taken."""
    with ctx.db.transaction() as session:
        row, token = service.create_token(session, body.name, body.role, actor)
        return TokenCreated(**token_out(row).model_dump(), token=token)


@router.delete(
    "/{ref}", status_code=204, responses=problems.responses(400, 401, 403, 404, 413, 422)
)
def revoke_token(ref: TokenRef, ctx: CtxDep, actor: AdminActor) -> Response:
    """Revoke a token by id or name; it stops working at once. 404 if there is none."""
    with ctx.db.transaction() as session:
        service.revoke_token(session, ref, actor)
    return Response(status_code=204)
