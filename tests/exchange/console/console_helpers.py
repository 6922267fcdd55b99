"""Helpers for the IG console tests: an app with the console, an IG account, sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from audit_helpers import BREAK_GLASS, make_ctx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exchange.console.accounts import add_user
from exchange.console.routes import router
from exchange.db.engine import write_tx
from exchange.pipeline.disclosure import PermitAll
from exchange.services import Services

PASSWORD = "correct horse battery staple"


def build_app(engine: Any, settings: Any, sink: Any) -> FastAPI:
    app = FastAPI()
    app.state.services = Services(settings=settings.with_(secret_key="console-test"), engine=engine,
                                  gate=PermitAll(), audit=sink)
    app.state.audit = sink
    app.include_router(router)
    return app


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


@pytest.fixture
def console(audit_db, sink) -> Iterator[tuple[TestClient, Any, Any]]:  # noqa: ANN001
    engine, settings = audit_db
    with write_tx(engine) as conn:
        add_user(conn, "ig.lead", PASSWORD)
    sink.record(make_ctx(resource_id="p1", patients=("p1",)))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p2", relationship=False))
    sink.record(make_ctx(status=403, resource_id="p3"))
    app = build_app(engine, settings, sink)
    with TestClient(app, base_url="http://testserver") as client:
        yield client, app, audit_db


def sign_in(client: TestClient, username: str = "ig.lead", password: str = PASSWORD) -> Any:
    form = client.get("/ig/login")
    return client.post("/ig/login", data={"username": username, "password": password,
                                          "csrf_token": csrf_of(form.text), "next": "/ig/"},
                       follow_redirects=False)


@pytest.fixture
def signed_in(console):  # noqa: ANN001, ANN201
    client, app, db = console
    resp = sign_in(client)
    assert resp.status_code == 303
    return client, app, db
