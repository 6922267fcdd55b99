"""Token requests recorded by the real access log (issue 7: "token requests" are audited;
no access without a record), through the real app and sink, SQLite and PostgreSQL.

The auth area's own tests replace the audit hook with a list; these go through
``exchange.app``'s glue to ``AuditSink`` and inject a failure there.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.audit.tables import audit_event
from exchange.auth.assertions import CLIENT_ASSERTION_TYPE
from exchange.auth.testing import (
    client_assertion,
    make_client_keypair,
    register_client,
    request_token,
    system_token,
)
from exchange.auth.token import GRANT_CLIENT_CREDENTIALS
from exchange.db.engine import write_tx
from exchange.settings import Settings

CLIENT = "token-audit-feed"


@pytest.fixture(scope="module")
def api(engine, settings: Settings) -> Iterator[tuple[TestClient, object]]:  # noqa: ANN001
    from exchange.app import create_app

    key = make_client_keypair()
    with write_tx(engine) as conn:
        register_client(conn, client_id=CLIENT, jwks=key.public_jwks(), scopes="system/*.rs",
                        organizations="T0K01")
    app = create_app(settings.with_(auth_enabled=True, audit_enabled=True), engine=engine)
    with TestClient(app) as client:
        yield client, key


def _events_after(engine, seq: int) -> list:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(audit_event).where(audit_event.c.seq > seq)
                            .order_by(audit_event.c.seq)).all()


def _head(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(audit_event.c.seq), 0))).scalar_one()


def _form(client: TestClient, key, **overrides: object) -> dict[str, str]:  # noqa: ANN001
    url = client.app.state.settings.base_url.rstrip("/") + "/auth/token"
    return {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "system/*.rs",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(key, CLIENT, url, **overrides)}


def test_token_request_is_recorded_by_the_sink(api, engine) -> None:  # noqa: ANN001
    client, key = api
    seq = _head(engine)
    assert system_token(client, key, CLIENT, "system/*.rs")
    rows = _events_after(engine, seq)
    assert [(r.type_code, r.subtype, r.outcome, r.client_id) for r in rows] == [
        ("110114", "token", 0, CLIENT)]


def test_refused_token_request_is_recorded_by_the_sink(api, engine) -> None:  # noqa: ANN001
    client, key = api
    seq = _head(engine)
    got = request_token(client, _form(client, key, aud="https://elsewhere.example/token"))
    assert got.status_code in (400, 401)
    rows = _events_after(engine, seq)
    assert [(r.subtype, r.outcome) for r in rows] == [("token", 4)]


@pytest.mark.parametrize("valid", [True, False], ids=["granted", "refused"])
def test_log_failure_on_a_token_request_is_503_without_a_token(api, engine, valid: bool) -> None:  # noqa: ANN001
    client, key = api
    form = _form(client, key) if valid else _form(client, key, aud="https://elsewhere.example/token")
    seq = _head(engine)
    client.app.state.audit.inject_failure(True)
    try:
        got = request_token(client, form)
    finally:
        client.app.state.audit.inject_failure(False)
    assert got.status_code == 503
    body = orjson.loads(got.content)
    assert body["error"] == "temporarily_unavailable"
    assert "access_token" not in body and "access_token" not in got.text
    assert got.headers["cache-control"] == "no-store"
    assert got.headers["retry-after"]
    assert _events_after(engine, seq) == []
    # the log is back: the same client is served again
    assert system_token(client, key, CLIENT, "system/*.rs")
