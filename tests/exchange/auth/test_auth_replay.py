"""Assertion replay is refused across workers: two apps (own engines, own connection
pools, as two worker processes would have) share only the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth import router
from exchange.auth.assertions import CLIENT_ASSERTION_TYPE
from exchange.auth.clients import register_client
from exchange.auth.testing import client_assertion, make_client_keypair
from exchange.db.engine import make_engine, write_tx
from exchange.settings import Settings

TOKEN_URL = "http://testserver/fhir/auth/token"


@pytest.fixture
def workers(db_url: str, auth_settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    clients, engines = [], []
    for _ in range(2):
        engine = make_engine(db_url)
        app = FastAPI()
        app.state.engine, app.state.settings = engine, auth_settings
        app.include_router(router)
        engines.append(engine)
        clients.append(TestClient(app))
    yield clients[0], clients[1]
    for engine in engines:
        engine.dispose()


def _form(assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}


def _client(engine: Engine) -> tuple[str, object]:
    cid = f"replay-{uuid.uuid4().hex[:8]}"
    key = make_client_keypair()
    with write_tx(engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), scopes="system/*.rs")
    return cid, key


def test_replay_on_another_worker_refused(engine: Engine, workers) -> None:  # noqa: ANN001
    a, b = workers
    cid, key = _client(engine)
    assertion = client_assertion(key, cid, TOKEN_URL)
    assert a.post("/fhir/auth/token", data=_form(assertion)).status_code == 200
    replay = b.post("/fhir/auth/token", data=_form(assertion))
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_concurrent_use_of_one_assertion_succeeds_once(engine: Engine, workers) -> None:  # noqa: ANN001
    a, b = workers
    cid, key = _client(engine)
    assertion = client_assertion(key, cid, TOKEN_URL)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda i: (a if i % 2 else b).post(
            "/fhir/auth/token", data=_form(assertion)).status_code, range(6)))
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401]
