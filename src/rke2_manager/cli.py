"""The ``rke2-manager`` command: serve, worker, migrate."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from rke2_manager.config import get_settings
from rke2_manager.datadir import prepare_data_dir

app = typer.Typer(help="Install and scale RKE2 clusters over SSH, one safe operation at a time.")
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
) -> None:
    """Run the API and (by default) the job worker; migrates the database first."""
    import uvicorn

    from rke2_manager.api.app import create_app

    _logging()
    settings = get_settings()
    prepare_data_dir(settings)  # umask 077; data dir 0700, its files 0600
    listen_host = host or settings.host
    listen_port = port or settings.port
    console.print(f"rke2-manager: database {settings.database_url.split('@')[-1]}")
    console.print(
        "rke2-manager: no API tokens are configured; bind to loopback only "
        f"(listening on {listen_host}:{listen_port})"
    )
    uvicorn.run(create_app(settings, start_worker=worker), host=listen_host, port=listen_port)


@app.command("worker")
def run_worker() -> None:
    """Run a job worker alone (for deployments with separate API and worker processes)."""
    from rke2_manager import migrate
    from rke2_manager.context import AppContext
    from rke2_manager.db import Database
    from rke2_manager.probe import make_prober
    from rke2_manager.vault import SecretBox
    from rke2_manager.worker import Worker

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
