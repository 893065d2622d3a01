"""Register the client's commands on the ``rke2-manager`` Typer app."""

from __future__ import annotations

import typer

from rke2_manager.client import apply, cmd_clusters, cmd_day2, cmd_jobs


def register(app: typer.Typer) -> None:
    """Add ``apply``, ``cluster``, ``node``, ``install``, ``scale``, ``upgrade``, ``snapshot``,
    ``restore``, ``job``, ``logs``, ``lock``, ``force-unlock`` and ``api-token``."""
    app.command("apply")(apply.apply)
    app.add_typer(cmd_clusters.cluster_app, name="cluster")
    app.add_typer(cmd_clusters.node_app, name="node")
    app.command("install")(cmd_jobs.install)
    app.add_typer(cmd_jobs.scale_app, name="scale")
    app.command("upgrade")(cmd_day2.upgrade)
    app.add_typer(cmd_day2.snapshot_app, name="snapshot")
    app.command("restore")(cmd_day2.restore)
    app.add_typer(cmd_jobs.job_app, name="job")
    app.command("logs")(cmd_jobs.logs)
    app.command("lock")(cmd_clusters.lock)
    app.command("force-unlock")(cmd_clusters.force_unlock)
    app.add_typer(cmd_day2.api_token_app, name="api-token")
