"""The ``rke2-manager`` API client: ``apply -f cluster.yaml`` and one command per API call.

It talks to a running service over HTTP (``config`` says where and with which token) and never
opens the database; the server-side commands (``serve``, ``worker``, ``migrate``, ``token``)
live in :mod:`rke2_manager.cli`. See docs/cli.md.
"""
