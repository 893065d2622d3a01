"""PostgreSQL LISTEN/NOTIFY wake-ups for workers in other processes and on other machines.

A job that takes a lock commits a ``pg_notify`` (see :func:`cluster_lock.notify_workers`); every
worker listening on the channel is woken at once instead of at its next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

from rke2_manager.cluster_lock import JOBS_CHANNEL

log = logging.getLogger(__name__)


class Listener:
    """A thread with its own connection that calls ``on_notify`` for every notification."""

    def __init__(self, engine: Engine, on_notify: Callable[[], None]) -> None:
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    self._on_notify()  # anything missed while (re)connecting
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._on_notify()
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                self._stop.wait(2.0)
