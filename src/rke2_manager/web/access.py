"""Who is looking at a dashboard page, and the login and logout forms.

Pages need the ``viewer`` role, established exactly as for the API (``api/auth.py``): a bearer
token (the session cookie becomes one, see :mod:`.session`), or protected mode's loopback
rule. A page request without acceptable credentials is sent to the login form (303), except in
protected mode, where no token exists to log in with: that answers 401 with the way out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rke2_manager.api.auth import PROTECTED_MODE, authenticate, public
from rke2_manager.api.deps import CtxDep
from rke2_manager.context import AppContext
from rke2_manager.errors import Forbidden, Unauthorized
from rke2_manager.models import ApiRole
from rke2_manager.tokens import service as tokens
from rke2_manager.web.render import error_page, page
from rke2_manager.web.session import (
    MAX_TOKEN,
    clear_session,
    csrf_for,
    request_token,
    set_session,
)

PREFIX = "/ui"
UNKNOWN_TOKEN = "The API token is unknown or revoked"


class LoginRequired(Exception):
    """A page was asked for without acceptable credentials."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Caller:
    """The page's viewer: actor name, role, and the CSRF value its scripts send (None when
    the request did not come with the session cookie, e.g. loopback in protected mode)."""

    actor: str
    role: ApiRole
    csrf: str | None

    def may(self, role: str) -> bool:
        return self.role.rank >= ApiRole(role).rank


def page_caller(request: Request, ctx: CtxDep) -> Caller:
    try:
        actor, role = authenticate(request, ctx)
    except Unauthorized as exc:
        raise LoginRequired(exc.detail) from None
    token = request_token(request)
    if token is None or request.headers.get("authorization") != f"Bearer {token}":
        return Caller(actor, role, None)
    return Caller(actor, role, csrf_for(token))


page_caller.required_role = ApiRole.VIEWER  # type: ignore[attr-defined]
CallerDep = Annotated[Caller, Depends(page_caller)]


def admin_caller(request: Request, ctx: CtxDep) -> Caller:
    """As :func:`page_caller`, for admin pages: Forbidden (403) below the admin role."""
    caller = page_caller(request, ctx)
    if not caller.may("admin"):
        raise Forbidden(
            f"This needs the 'admin' role; the token '{caller.actor}' has '{caller.role.value}'"
        )
    return caller


admin_caller.required_role = ApiRole.ADMIN  # type: ignore[attr-defined]
AdminCallerDep = Annotated[Caller, Depends(admin_caller)]
PUBLIC = Depends(public)


def safe_next(value: str | None) -> str:
    """Where to go after login: a dashboard path only (no open redirect)."""
    if (
        value
        and value.startswith(f"{PREFIX}/")
        and not value.startswith("//")
        and "\\" not in value
        and len(value) <= 500
        and value.isprintable()
    ):
        return value
    return f"{PREFIX}/"


def on_login_required(request: Request, exc: LoginRequired) -> Response:
    if exc.detail == PROTECTED_MODE:
        return error_page(request, 401, "Unauthorized", exc.detail)
    target = safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    response = RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
    if exc.detail == UNKNOWN_TOKEN:
        clear_session(response, secure=request.url.scheme == "https")
    return response


router = APIRouter()


def _token_state(ctx: AppContext, token: str | None) -> tuple[bool, bool]:
    """(any token exists, ``token`` is a valid one)."""
    with ctx.db.read_session() as session:
        valid = token is not None and tokens.authenticate(session, token) is not None
        return tokens.any_active(session), valid


@router.get("/login", dependencies=[PUBLIC], response_class=HTMLResponse)
async def login_form(request: Request, ctx: CtxDep, next: str | None = None) -> HTMLResponse:
    any_token, _ = await asyncio.to_thread(_token_state, ctx, None)
    return page(
        request,
        "login.html",
        caller=None,
        csrf=None,
        next=safe_next(next),
        protected=not any_token,
        message=None,
    )


@router.post("/login", dependencies=[PUBLIC], response_class=HTMLResponse)
async def login(request: Request, ctx: CtxDep) -> Response:
    """Check the token and store it in the session cookie (a form post: the body is
    ``token=…&next=…``; the API's JSON default for bodies does not apply to it)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    token = (fields.get("token") or [""])[0].strip()
    target = safe_next((fields.get("next") or [""])[0])
    usable = bool(token) and len(token) <= MAX_TOKEN and token.isascii() and token.isprintable()
    exists, valid = await asyncio.to_thread(_token_state, ctx, token if usable else None)
    if not valid:
        message = UNKNOWN_TOKEN if token else "Enter an API token"
        return page(
            request,
            "login.html",
            401,
            caller=None,
            csrf=None,
            next=target,
            protected=not exists,
            message=message,
        )
    response = RedirectResponse(target, status_code=303)
    set_session(response, token, secure=request.url.scheme == "https")
    return response


@router.post("/logout", dependencies=[PUBLIC])
def logout(request: Request) -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    clear_session(response, secure=request.url.scheme == "https")
    return response
