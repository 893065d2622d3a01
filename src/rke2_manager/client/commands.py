"""Register the client's commands on the ``rke2-manager`` Typer app."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from rke2_manager.client import apply, cmd_clusters, cmd_day2, cmd_jobs, cmd_preflight
from rke2_manager.client.common import err
from rke2_manager.client.errors import INTERNAL


def _one_line(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command``, with an unexpected error (a bug, an answer not from this API) said in one
    line and exit status 70 instead of a traceback (whose locals would show the token)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            err.print(f"rke2-manager: internal error: {type(exc).__name__}: {exc}", markup=False)
            raise typer.Exit(INTERNAL) from None

    return run


def _group(group: typer.Typer) -> typer.Typer:
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = _one_line(info.callback)
    return group


def register(app: typer.Typer) -> None:
    """Add ``apply``, ``cluster``, ``node``, ``install``, ``scale``, ``upgrade``, ``snapshot``,
    ``restore``, ``preflight``, ``job``, ``logs``, ``lock``, ``force-unlock`` and
    ``api-token``."""
    app.command("apply")(_one_line(apply.apply))
    app.add_typer(_group(cmd_clusters.cluster_app), name="cluster")
    app.add_typer(_group(cmd_clusters.node_app), name="node")
    app.command("install")(_one_line(cmd_jobs.install))
    app.add_typer(_group(cmd_jobs.scale_app), name="scale")
    app.command("upgrade")(_one_line(cmd_day2.upgrade))
    app.add_typer(_group(cmd_day2.snapshot_app), name="snapshot")
    app.command("restore")(_one_line(cmd_day2.restore))
    app.command("preflight")(_one_line(cmd_preflight.preflight))
    cmd_jobs.job_app.command("preflight")(cmd_preflight.job_preflight)
    app.add_typer(_group(cmd_jobs.job_app), name="job")
    app.command("logs")(_one_line(cmd_jobs.logs))
    app.command("lock")(_one_line(cmd_clusters.lock))
    app.command("force-unlock")(_one_line(cmd_clusters.force_unlock))
    app.add_typer(_group(cmd_day2.api_token_app), name="api-token")
