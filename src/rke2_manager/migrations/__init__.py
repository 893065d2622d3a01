"""Alembic migrations, run with ``rke2-manager migrate`` (and on ``serve``)."""
