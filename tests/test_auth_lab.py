"""Protected mode seen from another machine: a lab host (its own network namespace) gets 401
until a token exists, then is served with it."""

from __future__ import annotations

import json

import pytest

from rke2_manager.api.app import create_app
from rke2_manager.api.auth import PROTECTED_MODE
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import ApiRole
from rke2_manager.tokens.service import create_token
from tests.factories import FakeProber
from tests.lab.fixtures import LabFactory
from tests.live import live_server

pytestmark = pytest.mark.lab


def test_protected_mode_from_a_non_loopback_host(
    lab_factory: LabFactory, settings: Settings, db: Database, prober: FakeProber
) -> None:
    lab = lab_factory(["h1"])
    settings.host = lab.gateway  # the service listens on the bridge, as `serve --host` would
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with live_server(app, host=lab.gateway) as url:

        def curl(*extra: str) -> tuple[int, dict[str, object]]:
            out = lab.run(
                "h1", f"curl -s -w '\\n%{{http_code}}' {' '.join(extra)} {url}/api/clusters"
            ).stdout
            body, _, code = out.rpartition("\n")
            return int(code), json.loads(body)

        code, body = curl()
        assert code == 401
        assert body["detail"] == PROTECTED_MODE
        with db.transaction() as s:
            _, token = create_token(s, "remote-viewer", ApiRole.VIEWER, "test")
        code, body = curl("-H", f"'Authorization: Bearer {token}'")
        assert code == 200 and body == []
        code, body = curl("-X", "POST", "-H", f"'Authorization: Bearer {token}'", "-d", "'{}'")
        assert code == 403
        assert body["detail"] == (
            "This needs the 'operator' role; the token 'remote-viewer' has 'viewer'"
        )
