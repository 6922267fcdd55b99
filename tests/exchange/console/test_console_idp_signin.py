"""IG console sign-in through the configured external identity provider (issue 7)."""

from __future__ import annotations

import time
import uuid

import orjson
import yaml
from console_helpers import build_app, csrf_of
from fastapi.testclient import TestClient

from exchange.auth.testing import make_client_keypair

IDP = "https://idp.region.example/realms/care"
AUDIENCE = "https://exchange.city.example/fhir"


def _setup(audit_db, sink, tmp_path):  # noqa: ANN001, ANN202
    engine, settings = audit_db
    key = make_client_keypair("RS384", kid="idp-ig")
    (tmp_path / "idp-jwks.json").write_bytes(orjson.dumps(key.public_jwks()))
    cfg = {"issuer": IDP, "jwks_file": "idp-jwks.json", "audience": AUDIENCE,
           "claims": {"organization": "org_ods", "role": "rbac_role"}}
    path = tmp_path / "trusted.yaml"
    path.write_text(yaml.safe_dump({"issuers": [cfg]}))
    settings = settings.with_(trusted_issuers_file=path)
    return engine, settings, key


def _token(key, role: str) -> str:  # noqa: ANN001
    now = int(time.time())
    return key.sign({"iss": IDP, "aud": AUDIENCE, "sub": "555000111222", "name": "Ms I Governance",
                     "org_ods": "RXX", "rbac_role": role, "scope": "user/AuditEvent.rs",
                     "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex})


def _sign_in(client: TestClient, token: str):  # noqa: ANN202
    form = client.get("/ig/login")
    return client.post("/ig/login-token", data={"access_token": token, "csrf_token": csrf_of(form.text),
                                                "next": "/ig/events"}, follow_redirects=False)


def test_ig_role_from_identity_provider_opens_a_session(audit_db, sink, tmp_path):
    engine, settings, key = _setup(audit_db, sink, tmp_path)
    with TestClient(build_app(engine, settings, sink)) as client:
        assert client.get("/ig/events", follow_redirects=False).status_code == 303
        r = _sign_in(client, _token(key, "R0001"))
        assert r.status_code == 303 and r.headers["location"] == "/ig/events"
        page = client.get("/ig/events")
        assert page.status_code == 200 and "Ms I Governance" in page.text


def test_non_ig_role_and_bad_tokens_are_refused(audit_db, sink, tmp_path):
    engine, settings, key = _setup(audit_db, sink, tmp_path)
    with TestClient(build_app(engine, settings, sink)) as client:
        assert _sign_in(client, _token(key, "R8000")).status_code == 401  # a clinician, not IG
        assert _sign_in(client, "not-a-token").status_code == 401
        other = make_client_keypair("RS384", kid="idp-ig")  # same kid, wrong key
        assert _sign_in(client, _token(other, "R0001")).status_code == 401
        assert client.get("/ig/events", follow_redirects=False).status_code == 303
