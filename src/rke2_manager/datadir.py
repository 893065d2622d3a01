"""The data directory holds the SQLite database and the generated key: only the service reads it.

:func:`prepare_data_dir` runs before anything opens a file there (``serve``, ``worker``,
``migrate`` and ``create_app``): the directory becomes 0700 and the files in it 0600, and the
SQLite database (wherever it lives) is created 0600 before SQLite first opens it — SQLite then
gives its ``-wal`` and ``-shm`` files the database's own mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from rke2_manager.config import Settings

log = logging.getLogger(__name__)
DIR_MODE = 0o700
FILE_MODE = 0o600
PROCESS_UMASK = 0o077


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` (not a symlink's target) to ``mode``; warn if it belongs to someone else."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    wanted = stat.S_ISDIR(st.st_mode) if mode == DIR_MODE else stat.S_ISREG(st.st_mode)
    if not wanted or stat.S_IMODE(st.st_mode) == mode:
        return
    try:
        path.chmod(mode)
    except PermissionError:
        log.warning("cannot make %s private (mode %o): it is not ours", path, mode)


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite database file of ``settings``, or None (PostgreSQL, in-memory)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def prepare_data_dir(settings: Settings, *, umask: bool = True) -> Path:
    """Create or tighten the data directory (0700) and its files (0600); return its path.

    With ``umask`` (the default, for the CLI's processes) the process umask becomes 077, so
    every file the service creates later — run directories, keys — is private too. An app built
    inside another process (``create_app``, tests) passes ``umask=False`` and leaves the
    process's umask to its owner. Files that belong to another user are left as they are, with
    a warning. Raises OSError if the directory cannot be created.
    """
    if umask:
        os.umask(PROCESS_UMASK)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(data_dir.resolve(), DIR_MODE)
    for entry in data_dir.iterdir():
        _tighten(entry, FILE_MODE)
    db_file = sqlite_path(settings)
    if db_file is not None:
        db_file.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        for suffix in ("", "-wal", "-shm", "-journal"):
            _tighten(db_file.with_name(db_file.name + suffix), FILE_MODE)
    return data_dir
