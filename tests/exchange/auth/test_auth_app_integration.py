"""The auth package wired into the real application (``exchange.app.create_app``): the
token endpoint, discovery, 401/403 on FHIR interactions, public metadata."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth.clients import register_client
from exchange.auth.testing import bearer, make_client_keypair, system_token, user_token
from exchange.db.engine import write_tx
from exchange.settings import Settings


@pytest.fixture
def real(engine: Engine, auth_settings: Settings) -> Iterator[TestClient]:
    from exchange.app import create_app

    settings = auth_settings.with_(consent_enabled=False, audit_enabled=False, secret_key="t")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def test_discovery_and_metadata_are_public(real: TestClient) -> None:
    assert real.get("/fhir/.well-known/smart-configuration").json()["token_endpoint"].endswith("/auth/token")
    cap = real.get("/fhir/metadata")
    assert cap.status_code == 200
    security = cap.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == "http://testserver/fhir/auth/token"


def test_fhir_interactions_need_a_token_and_scope(real: TestClient, engine: Engine) -> None:
    cid = f"feed-{uuid.uuid4().hex[:6]}"
    key = make_client_keypair("RS384")
    with write_tx(engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), organizations="A81001",
                        scopes="system/Patient.rs user/*.rs", may_assert_users=True)
    missing = real.get("/fhir/Patient")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["resourceType"] == "OperationOutcome"
    token = system_token(real, key, cid, "system/Patient.rs")
    assert real.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    denied = real.get("/fhir/Observation", headers=bearer(token))
    assert denied.status_code == 403 and denied.json()["issue"][0]["code"] == "forbidden"
    clinician = user_token(real, key, cid, "user/*.rs", organization="A81001")
    assert real.get("/fhir/Observation", headers=bearer(clinician)).status_code == 200
    garbage = real.get("/fhir/Patient", headers=bearer(token[:-6] + "AAAAAA"))
    assert garbage.status_code == 401
