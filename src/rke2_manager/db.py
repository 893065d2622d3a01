"""Engine and sessions; on SQLite, write transactions are taken up front (``BEGIN IMMEDIATE``).

SQLite has no ``SELECT … FOR UPDATE`` (SQLAlchemy drops it silently), so a session that will
write starts with ``BEGIN IMMEDIATE``: the database's single write lock is taken before the first
read, and two writers can never both read a cluster as idle. PostgreSQL uses row locks instead,
and the same sessions work unchanged there.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from rke2_manager.vault import SecretBox

WRITE_OPTION = "rke2m_write"
BOX_INFO = "rke2m_box"


def load_json(text: str | bytes) -> Any:
    """JSON columns as stored; a value no parser can read (nested past Python's recursion
    limit, or not JSON at all in a hand-edited SQLite file) reads as a string saying so, so
    no stored value can make a later read fail."""
    try:
        return json.loads(text)
    except (RecursionError, ValueError):
        return f"<unreadable JSON value of {len(text)} characters>"


def _ensure_wal(cur: Any, patience: float = 30.0) -> None:
    """Switch the file to WAL (it stays so). Switching needs the file to itself, and SQLite
    answers "database is locked" at once rather than waiting, e.g. while another process runs
    the first migration on a new file: retry for up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        _ensure_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite files get WAL, foreign keys and up-front write locks."""
    parsed = make_url(url)
    kwargs.setdefault("json_deserializer", load_json)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Writers queue on the database lock, not on the pool: size it for the thread pool.
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 60)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (or is locked) right now, so the
    same work may succeed when retried."""
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class WriteSession(Session):
    """A session that may write: made by :meth:`Database.write_session` (on SQLite it begins
    with ``BEGIN IMMEDIATE``). Services that write take this type, so passing them a
    :class:`ReadSession` is a type error."""


class ReadSession(Session):
    """A session for reads only (:meth:`Database.read_session`). Not a :class:`WriteSession`
    to the type checker; at run time, flushing a change through it raises ReadOnlySession."""

    def flush(self, objects: Any = None) -> None:
        if self.new or self.dirty or self.deleted:
            raise ReadOnlySession("a read session cannot write; use Database.transaction()")
        super().flush(objects)


class ReadOnlySession(RuntimeError):
    """A change was flushed through a :class:`ReadSession`."""


class Database:
    """An engine with two session factories: reads, and writes that lock up front on SQLite.

    With a SecretBox (``box=`` or :meth:`attach_redaction`) every session redacts secrets from
    job, node, log and audit rows before they are flushed, and carries the box in
    ``session.info`` (see :func:`session_box`) for response builders that need it.
    """

    def __init__(self, url: str, *, box: SecretBox | None = None, **kwargs: Any) -> None:
        self.engine = make_engine(url, **kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._read = sessionmaker(self.engine, class_=ReadSession, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}),
            class_=WriteSession,
            expire_on_commit=False,
        )
        self.box: SecretBox | None = None
        if box is not None:
            self.attach_redaction(box)

    def attach_redaction(self, box: SecretBox) -> None:
        """Redact secrets (``redaction.py``) in every session made from now on; once only."""
        from rke2_manager.redaction import install_session_redaction

        if self.box is not None:
            if self.box is not box:
                raise ValueError("this Database already redacts with another SecretBox")
            return
        self.box = box
        for factory in (self._read, self._write):
            factory.configure(info={BOX_INFO: box})
            install_session_redaction(factory, box)

    def read_session(self) -> ReadSession:
        return self._read()

    def write_session(self) -> WriteSession:
        return self._write()

    @contextmanager
    def transaction(self) -> Iterator[WriteSession]:
        """One unit of work: commit on success, roll back on any exception.

        This is the only commit point outside the request dependency; services only flush.
        """
        session = self.write_session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def session_box(session: Session | None) -> SecretBox | None:
    """The SecretBox of the Database that made ``session``, if one was attached."""
    box: SecretBox | None = session.info.get(BOX_INFO) if session is not None else None
    return box
