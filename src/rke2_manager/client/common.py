"""What every client command shares: the connection flags, ``--output``, and turning errors
into a message (the API's ``detail``) and an exit status — never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from rke2_manager.client.api import Api
from rke2_manager.client.config import resolve
from rke2_manager.client.errors import INTERRUPTED, ClientError, UsageError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="API URL (else env RKE2M_URL, the config file, http://127.0.0.1:8000)"
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token (else env RKE2M_TOKEN, the config file); a flag is visible to other local "
        "users in ps: prefer the environment or the config file",
        show_default=False,
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
ClusterArg = Annotated[str, typer.Argument(help="cluster name or id", show_default=False)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


@contextmanager
def client(url: str | None, token: str | None) -> Iterator[Api]:
    """An Api for the command; every ClientError becomes its message and exit status."""
    try:
        with Api(resolve(url, token)) as api:
            yield api
    except ClientError as exc:
        err.print(f"rke2-manager: {exc.message}", markup=False, highlight=False)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        err.print("rke2-manager: interrupted (a job already started goes on on the server)")
        raise typer.Exit(INTERRUPTED) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def confirm(question: str, yes: bool) -> None:
    """Go on only if ``yes`` or the user says so; on no terminal, ``--yes`` is needed."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — not asked on a non-interactive input: pass --yes")
    if not typer.confirm(question, default=False, err=True):
        raise UsageError("aborted: nothing was changed")
