"""Fixtures for the authorisation tests.

The database: ``db_url`` is overridden here with *package* scope -- one freshly migrated
SQLite and one PostgreSQL database for all authorisation tests (every test uses its own
client ids), which keeps this directory fast; the shared ``engine`` fixture
(tests/conftest.py) builds on it. The app is a minimal
FastAPI app carrying the auth router plus a probe route that runs ``authenticate`` and
``check_access`` exactly as the FHIR pipeline does, so these tests do not depend on the
rest of the facade.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from exchange.auth import authenticate, check_access, router
from exchange.db.engine import normalise_url, read_tx
from exchange.db.migrate import upgrade
from exchange.outcome import FhirError
from exchange.settings import Settings

BASE_URL = "http://testserver/fhir"
TOKEN_URL = BASE_URL + "/auth/token"
PG_URL = normalise_url(
    os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
)


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('authdb') / 'exchange.db'}"
        upgrade(url)
        yield url
        return
    name = f"auth_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        if os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable: {exc}")
        pytest.skip("PostgreSQL not reachable")
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def auth_settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, base_url=BASE_URL, var_dir=tmp_path / "var", token_lifetime=300
    )


def build_app(engine: Engine, settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.engine = engine
    app.state.settings = settings
    app.state.token_audit = []
    app.state.audit_token_request = lambda outcome, client_id, detail: app.state.token_audit.append(
        (outcome, client_id, detail)
    )
    app.include_router(router)

    @app.exception_handler(FhirError)
    async def _fhir_error(_request: Request, exc: FhirError) -> JSONResponse:
        return JSONResponse(exc.outcome(), status_code=exc.status, headers=exc.headers)

    @app.get("/fhir/_probe/{interaction}/{resource_type}")
    def probe(interaction: str, resource_type: str, request: Request) -> dict:
        with read_tx(engine) as conn:
            who = authenticate(conn, settings, request.headers.get("authorization"))
        check_access(who, interaction, None if resource_type == "-" else resource_type)
        return {
            "kind": who.kind,
            "client_id": who.client_id,
            "scopes": sorted(who.scopes),
            "practitioner_id": who.practitioner_id,
            "practitioner_name": who.practitioner_name,
            "role": who.role,
            "organization": who.organization,
            "purpose_of_use": who.purpose_of_use,
            "break_glass_reason": who.break_glass_reason,
            "patient_id": who.patient_id,
            "issuer": who.issuer,
        }

    return app


@pytest.fixture
def http(engine: Engine, auth_settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(engine, auth_settings)) as client:
        yield client
