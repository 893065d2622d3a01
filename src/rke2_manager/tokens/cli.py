"""``rke2-manager token create|list|revoke``: manage API tokens on the server's database.

Run on the server (it reads ``RKE2M_DATABASE_URL`` like the service), so the first admin
token can be made before any token exists. Remote clients use ``/api/tokens`` instead.
"""

from __future__ import annotations

import getpass
import json
import re
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rke2_manager.db import Database
from rke2_manager.models import ApiRole

app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _database() -> Database:
    from rke2_manager import migrate
    from rke2_manager.config import get_settings
    from rke2_manager.datadir import prepare_data_dir

    settings = get_settings()
    prepare_data_dir(settings)
    db = Database(settings.database_url)
    migrate.upgrade(db.engine)
    return db


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:128]
    except Exception:
        return "cli"


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who holds it (the audit log's actor)")],
    role: Annotated[ApiRole, typer.Option(help="viewer, operator or admin")],
) -> None:
    """Create a token. It is printed once, as the last word of the last line."""
    from rke2_manager.errors import DomainError
    from rke2_manager.tokens import service

    if not _NAME.fullmatch(name):
        err.print("token name: lowercase letters, digits, '.', '_' and '-' (at most 64)")
        raise typer.Exit(2)
    db = _database()
    try:
        with db.transaction() as session:
            row, token = service.create_token(session, name, role, _actor())
    except DomainError as exc:
        err.print(exc.detail)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    # Both on stdout, in this order: scripts take the last word of the last line.
    print(f"Created token '{row.name}' (role {row.role}). It is shown only now; keep it safe.")
    print(f"token: {token}", flush=True)


@app.command("list")
def list_(
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """List tokens (names, roles, use), never the tokens themselves."""
    from rke2_manager.tokens import service
    from rke2_manager.tokens.schemas import token_out

    db = _database()
    try:
        with db.read_session() as session:
            rows = [token_out(t) for t in service.list_tokens(session)]
    finally:
        db.dispose()
    if output == "json":
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("id", "name", "role", "prefix", "created", "last used", "revoked")
    for r in rows:
        table.add_row(
            str(r.id),
            r.name,
            r.role,
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "-",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "-",
        )
    out.print(table)


@app.command("revoke")
def revoke(ref: Annotated[str, typer.Argument(help="token name or id")]) -> None:
    """Revoke a token: it stops working at once."""
    from rke2_manager.errors import DomainError
    from rke2_manager.tokens import service

    db = _database()
    try:
        with db.transaction() as session:
            row = service.revoke_token(session, ref, _actor())
    except DomainError as exc:
        err.print(exc.detail)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    err.print(f"Token '{row.name}' is revoked.")
