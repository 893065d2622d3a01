"""The ``rke2-manager`` command: serve, worker, migrate, token (server side, on the database);
the API client's commands (apply, cluster, job, …) come from :mod:`rke2_manager.client`."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from rke2_manager.client.commands import register as register_client
from rke2_manager.config import get_settings
from rke2_manager.datadir import prepare_data_dir
from rke2_manager.tokens import cli as token_cli

app = typer.Typer(
    help="Install and scale RKE2 clusters over SSH, one safe operation at a time.",
    pretty_exceptions_show_locals=False,  # a traceback must not print tokens or keys
)
app.add_typer(token_cli.app, name="token")
register_client(app)  # apply, cluster, node, job, logs, …: the API client (docs/cli.md)
console = Console(stderr=True)


def _logging() -> None:
    from rke2_manager.redaction import install_log_redaction

    install_log_redaction()  # every record: decrypted secrets and the key masked
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    worker: Annotated[bool, typer.Option(help="run the job worker in this process")] = True,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="with no API token created, serve every client as admin (throwaway labs only)",
        ),
    ] = False,
) -> None:
    """Run the API and (by default) the job worker; migrates the database first.

    With no API token created, only loopback clients are served (protected mode), so a
    non-loopback ``--host`` refuses to start until a token exists (or ``--insecure-no-auth``).
    """
    import uvicorn

    from rke2_manager import migrate
    from rke2_manager.api.app import create_app
    from rke2_manager.api.auth import is_loopback
    from rke2_manager.db import Database
    from rke2_manager.tokens.service import any_active

    _logging()
    settings = get_settings()
    prepare_data_dir(settings)  # umask 077; data dir 0700, its files 0600
    settings.host = host or settings.host  # the Host check admits the listen address
    settings.insecure_no_auth = settings.insecure_no_auth or insecure_no_auth
    listen_port = port or settings.port
    console.print(f"rke2-manager: database {settings.database_url.split('@')[-1]}")
    db = Database(settings.database_url)
    migrate.upgrade(db.engine)
    with db.read_session() as session:
        tokens_exist = any_active(session)
    db.dispose()
    loopback = settings.host == "localhost" or is_loopback(settings.host)
    if not tokens_exist and not loopback and not settings.insecure_no_auth:
        console.print(
            f"rke2-manager: refusing to listen on {settings.host}: no API token exists, so "
            "anyone who reaches the port could run commands as root on every node. Create "
            "one first: rke2-manager token create --name admin --role admin "
            "(or pass --insecure-no-auth for a throwaway lab)."
        )
        raise typer.Exit(2)
    if not tokens_exist and settings.insecure_no_auth:
        console.print(
            "[bold red]rke2-manager: INSECURE: no authentication. Every client that reaches "
            f"{settings.host}:{listen_port} is served as admin until a token is created."
            "[/bold red]"
        )
    elif not tokens_exist:
        console.print(
            "rke2-manager: protected mode: no API token exists, so only loopback clients are "
            "served. Create one with: rke2-manager token create --name NAME --role admin"
        )
    console.print(f"rke2-manager: listening on {settings.host}:{listen_port}")
    app_ = create_app(settings, start_worker=worker, run_migrations=False)  # migrated above
    uvicorn.run(app_, host=settings.host, port=listen_port)


@app.command("worker")
def run_worker() -> None:
    """Run a job worker alone (for deployments with separate API and worker processes)."""
    from rke2_manager import migrate
    from rke2_manager.context import AppContext
    from rke2_manager.db import Database
    from rke2_manager.jobs.runner.worker import Worker
    from rke2_manager.probe import make_prober
    from rke2_manager.vault import SecretBox

    _logging()
    settings = get_settings()
    prepare_data_dir(settings)  # umask 077; data dir 0700, its files 0600
    box = SecretBox.from_settings(settings)
    db = Database(settings.database_url, box=box)  # redacts secrets before each flush
    migrate.upgrade(db.engine)
    ctx = AppContext(settings, db, box, make_prober(settings))
    w = Worker(ctx)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    w.start()
    console.print(f"rke2-manager worker {w.id} started")
    done.wait()
    w.stop()


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from rke2_manager import migrate as migrations
    from rke2_manager.db import make_engine

    settings = get_settings()
    prepare_data_dir(settings)  # umask 077; data dir 0700, its files 0600
    engine = make_engine(settings.database_url)
    migrations.upgrade(engine)
    engine.dispose()
    console.print("database schema is up to date")


if __name__ == "__main__":
    app()
