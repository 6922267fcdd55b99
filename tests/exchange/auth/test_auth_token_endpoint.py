"""The token endpoint as an outside client uses it: own key pair, own signed assertions,
over HTTP (SMART Backend Services; RFC 7523; RFC 6749 §5.2 errors; RFC 7662)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth import jws
from exchange.auth.assertions import CLIENT_ASSERTION_TYPE
from exchange.auth.clients import register_client, set_disabled
from exchange.auth.testing import (
    ClientKey,
    bearer,
    client_assertion,
    make_client_keypair,
    system_token,
    user_assertion,
    user_token,
)
from exchange.auth.token import GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER
from exchange.db.engine import write_tx

TOKEN_URL = "http://testserver/fhir/auth/token"


def new_client(
    engine: Engine,
    *,
    alg: str = "ES384",
    scopes: str = "system/*.rs",
    orgs: str = "A81001",
    users: bool = False,
) -> tuple[str, ClientKey]:
    cid = f"client-{uuid.uuid4().hex[:8]}"
    key = make_client_keypair(alg)
    with write_tx(engine) as conn:
        register_client(conn, client_id=cid, jwks=key.public_jwks(), scopes=scopes,
                        organizations=orgs, may_assert_users=users)
    return cid, key


def cc_form(key: ClientKey, cid: str, scope: str = "system/*.rs", assertion: str | None = None) -> dict:
    return {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": scope,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion or client_assertion(key, cid, TOKEN_URL),
    }


def user_form(key: ClientKey, cid: str, scope: str = "user/*.rs", **user: object) -> dict:
    user.setdefault("organization", "A81001")
    return {
        "grant_type": GRANT_JWT_BEARER,
        "scope": scope,
        "assertion": user_assertion(key, cid, TOKEN_URL, **user),
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": client_assertion(key, cid, TOKEN_URL),
    }


def assert_oauth_error(response, error: str, status: int = 400) -> None:  # noqa: ANN001
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert "error_description" in body
    assert response.headers["cache-control"] == "no-store"


# -- discovery ---------------------------------------------------------------------


def test_smart_configuration(http: TestClient) -> None:
    r = http.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == "http://testserver/fhir"
    assert doc["token_endpoint"] == TOKEN_URL
    assert doc["introspection_endpoint"] == "http://testserver/fhir/auth/introspect"
    assert doc["jwks_uri"] == "http://testserver/fhir/.well-known/jwks.json"
    assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert doc["token_endpoint_auth_signing_alg_values_supported"] == ["ES384", "RS384"]
    assert set(doc["grant_types_supported"]) == {GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER}
    assert {"client-confidential-asymmetric", "permission-v1", "permission-v2"} <= set(doc["capabilities"])
    assert "system/*.rs" in doc["scopes_supported"]


def test_jwks_publishes_public_keys_only(http: TestClient) -> None:
    keys = http.get("/fhir/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["alg"] == "ES384" and keys[0]["kid"]
    assert "d" not in keys[0]


# -- the two grants ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_client_credentials_grant(http: TestClient, engine: Engine, alg: str) -> None:
    cid, key = new_client(engine, alg=alg, scopes="system/*.rs system/Observation.c")
    r = http.post("/fhir/auth/token", data=cc_form(key, cid, "system/*.rs system/Observation.c"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/*.rs system/Observation.c"
    assert r.headers["cache-control"] == "no-store"
    # the access token is signed by the exchange (its JWKS), not by the client
    header, claims = jws.verify(body["access_token"],
                                http.get("/fhir/.well-known/jwks.json").json()["keys"],
                                algorithms={"ES384"})
    assert header["typ"] == "at+jwt"
    assert claims["client_id"] == cid and claims["sub"] == cid
    assert claims["exp"] - claims["iat"] <= 300
    who = http.get("/fhir/_probe/read/Patient", headers=bearer(body["access_token"])).json()
    assert who["kind"] == "system" and who["client_id"] == cid and who["organization"] == "A81001"
    assert http.get("/fhir/_probe/create/Observation", headers=bearer(body["access_token"])).status_code == 200
    # audited through the app hook
    outcome, audited_client, detail = http.app.state.token_audit[-1]
    assert (outcome, audited_client) == ("success", cid)
    assert detail["grant_type"] == GRANT_CLIENT_CREDENTIALS


def test_user_grant_carries_practitioner_context(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", orgs="A81001 RXX", users=True)
    token = user_token(http, key, cid, "user/*.rs", practitioner="555000111222", organization="RXX",
                       role="R8000", purpose="TREAT", name="Dr A Jones")
    who = http.get("/fhir/_probe/search-type/Observation", headers=bearer(token)).json()
    assert who == {
        "kind": "user", "client_id": cid, "scopes": ["user/*.rs"],
        "practitioner_id": "555000111222", "practitioner_name": "Dr A Jones", "role": "R8000",
        "organization": "RXX", "purpose_of_use": "TREAT", "break_glass_reason": None,
        "patient_id": None, "issuer": "http://testserver/fhir",
    }


def test_break_glass_needs_and_carries_reason(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", users=True)
    r = http.post("/fhir/auth/token", data=user_form(key, cid, purpose="BTG"))
    assert_oauth_error(r, "invalid_grant")
    token = user_token(http, key, cid, "user/*.rs", organization="A81001", purpose="BTG",
                       reason="Unconscious patient in ED, no consent possible")
    who = http.get("/fhir/_probe/read/Patient", headers=bearer(token)).json()
    assert who["purpose_of_use"] == "BTG"
    assert who["break_glass_reason"] == "Unconscious patient in ED, no consent possible"


def test_user_grant_rejects_unknown_purpose_and_missing_claims(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", users=True)
    assert_oauth_error(http.post("/fhir/auth/token", data=user_form(key, cid, purpose="RESEARCH")),
                       "invalid_grant")
    assert_oauth_error(http.post("/fhir/auth/token", data=user_form(key, cid, role=None)), "invalid_grant")
    assert_oauth_error(http.post("/fhir/auth/token", data=user_form(key, cid, practitioner=None)),
                       "invalid_grant")


def test_user_grant_gets_no_system_scopes(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="system/*.rs user/Patient.rs", users=True)
    r = http.post("/fhir/auth/token", data=user_form(key, cid, scope="system/*.rs user/Patient.rs"))
    assert r.status_code == 200
    assert r.json()["scope"] == "user/Patient.rs"


def test_patient_session_token_is_confined(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="patient/*.rs user/*.rs", users=True)
    token = user_token(http, key, cid, "patient/*.rs", practitioner="nhs-login-42",
                       organization=None, role=None, patient="pat-1")
    who = http.get("/fhir/_probe/read/Observation", headers=bearer(token)).json()
    assert who["kind"] == "patient" and who["patient_id"] == "pat-1"
    assert who["scopes"] == ["patient/*.rs"]
    from exchange.auth.scopes import check_patient, patient_restriction
    from exchange.pipeline.context import Requester

    requester = Requester(kind="patient", scopes=frozenset(who["scopes"]), patient_id="pat-1")
    assert patient_restriction(requester) == "pat-1"
    with pytest.raises(Exception, match="single patient"):
        check_patient(requester, ["pat-2"])
    # a patient session never gets user/ scopes
    r = http.post("/fhir/auth/token", data=user_form(key, cid, scope="user/*.rs", organization=None,
                                                      role=None, patient="pat-1"))
    assert_oauth_error(r, "invalid_scope")


# -- hardening: client assertion --------------------------------------------------------


def _forged(header: dict, claims: dict, signature: bytes = b"") -> str:
    return (jws.b64url_encode(orjson.dumps(header)) + "." + jws.b64url_encode(orjson.dumps(claims))
            + "." + jws.b64url_encode(signature))


def _claims(cid: str, **extra: object) -> dict:
    now = int(time.time())
    return {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 200, "jti": uuid.uuid4().hex, **extra}


def test_alg_none_assertion_rejected(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine)
    forged = _forged({"alg": "none", "kid": key.kid}, _claims(cid))
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=forged)),
                       "invalid_client", 401)


def test_hmac_signed_with_public_key_rejected(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, alg="RS384")
    pem = key.key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = _forged({"alg": "HS384", "kid": key.kid}, _claims(cid)).rsplit(".", 1)[0]
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha384).digest()
    r = http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=unsigned + "." + jws.b64url_encode(mac)))
    assert_oauth_error(r, "invalid_client", 401)


def test_rs256_not_accepted_for_assertions(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, alg="RS384")
    token = jws.sign(_claims(cid), key.key, "RS256", {"kid": key.kid})
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=token)),
                       "invalid_client", 401)


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "someone-else"},
        {"sub": "someone-else"},
        {"aud": "http://testserver/fhir/other"},
        {"aud": None},
        {"exp": None},
        {"jti": None},
    ],
    ids=["wrong-iss", "wrong-sub", "wrong-aud", "no-aud", "no-exp", "no-jti"],
)
def test_assertion_claims_checked(http: TestClient, engine: Engine, change: dict) -> None:
    cid, key = new_client(engine)
    assertion = client_assertion(key, cid, TOKEN_URL, **change)
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=assertion)),
                       "invalid_client", 401)


def test_expired_and_too_long_lived_and_future_assertions(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine)
    now = int(time.time())
    for change in ({"exp": now - 120, "iat": now - 400},  # expired
                   {"exp": now + 3600},                     # more than five minutes ahead
                   {"nbf": now + 600}, {"iat": now + 600}):  # not yet valid
        assertion = client_assertion(key, cid, TOKEN_URL, **change)
        r = http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=assertion))
        assert_oauth_error(r, "invalid_client", 401)


def test_replayed_jti_rejected(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine)
    assertion = client_assertion(key, cid, TOKEN_URL)
    assert http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=assertion)).status_code == 200
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=assertion)),
                       "invalid_client", 401)
    # also consumed when the request then failed for another reason (scope)
    other = client_assertion(key, cid, TOKEN_URL)
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, "system/*.write", other)),
                       "invalid_scope")
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, assertion=other)),
                       "invalid_client", 401)


def test_foreign_kid_rejected(http: TestClient, engine: Engine) -> None:
    cid, _key = new_client(engine)
    attacker = make_client_keypair()
    r = http.post("/fhir/auth/token", data=cc_form(attacker, cid))
    assert_oauth_error(r, "invalid_client", 401)
    # the attacker reusing the registered kid still fails the signature
    _cid2, key2 = new_client(engine)
    spoof = ClientKey(attacker.key, key2.kid, "ES384")
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(spoof, _cid2)), "invalid_client", 401)


def test_jku_and_x5u_headers_are_not_followed(http: TestClient, engine: Engine) -> None:
    cid, _key = new_client(engine)
    attacker = make_client_keypair()
    assertion = attacker.sign(_claims(cid), jku="http://127.0.0.1:9/attacker-jwks.json",
                              x5u="http://127.0.0.1:9/cert.pem")
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(attacker, cid, assertion=assertion)),
                       "invalid_client", 401)


def test_scope_escalation_is_not_granted(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="system/Observation.rs")
    r = http.post("/fhir/auth/token", data=cc_form(key, cid, "system/*.cruds"))
    assert r.status_code == 200
    assert r.json()["scope"] == "system/Observation.rs"
    token = r.json()["access_token"]
    assert http.get("/fhir/_probe/read/Observation", headers=bearer(token)).status_code == 200
    denied = http.get("/fhir/_probe/delete/Observation", headers=bearer(token))
    assert denied.status_code == 403
    assert denied.json()["resourceType"] == "OperationOutcome"
    assert http.get("/fhir/_probe/read/Patient", headers=bearer(token)).status_code == 403
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid, "system/Patient.rs")),
                       "invalid_scope")


def test_user_assertion_for_unregistered_organisation(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", orgs="A81001", users=True)
    r = http.post("/fhir/auth/token", data=user_form(key, cid, organization="B99999"))
    assert_oauth_error(r, "invalid_grant")
    assert http.app.state.token_audit[-1][0] == "failure"


def test_user_assertion_signed_by_other_key_or_replayed(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", users=True)
    attacker = make_client_keypair()
    form = user_form(key, cid)
    form["assertion"] = user_assertion(attacker, cid, TOKEN_URL, organization="A81001")
    assert_oauth_error(http.post("/fhir/auth/token", data=form), "invalid_grant")
    form = user_form(key, cid)
    assert http.post("/fhir/auth/token", data=form).status_code == 200
    form["client_assertion"] = client_assertion(key, cid, TOKEN_URL)  # fresh client auth, old user jti
    assert_oauth_error(http.post("/fhir/auth/token", data=form), "invalid_grant")


def test_client_not_allowed_to_assert_users(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs", users=False)
    assert_oauth_error(http.post("/fhir/auth/token", data=user_form(key, cid)), "unauthorized_client")


def test_disabled_client_refused_and_its_tokens_die(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine)
    token = system_token(http, key, cid, "system/*.rs")
    assert http.get("/fhir/_probe/read/Patient", headers=bearer(token)).status_code == 200
    with write_tx(engine) as conn:
        assert set_disabled(conn, cid)
    r = http.get("/fhir/_probe/read/Patient", headers=bearer(token))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_oauth_error(http.post("/fhir/auth/token", data=cc_form(key, cid)), "invalid_client", 401)
    intro = http.post("/fhir/auth/introspect", data={"token": token}, headers=bearer(token))
    assert intro.status_code == 401


# -- protocol errors -----------------------------------------------------------------


def test_protocol_errors(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine)
    form = cc_form(key, cid)
    assert_oauth_error(http.post("/fhir/auth/token", data={**form, "grant_type": "password"}),
                       "unsupported_grant_type")
    assert_oauth_error(http.post("/fhir/auth/token", json=form), "invalid_request")
    repeated = "&".join(f"{k}={v}" for k, v in form.items()) + "&scope=system/*.rs"
    r = http.post("/fhir/auth/token", content=repeated,
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert_oauth_error(r, "invalid_request")
    no_auth = {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "system/*.rs", "client_id": cid}
    assert_oauth_error(http.post("/fhir/auth/token", data=no_auth), "invalid_client", 401)
    no_scope = {k: v for k, v in cc_form(key, cid).items() if k != "scope"}
    assert_oauth_error(http.post("/fhir/auth/token", data=no_scope), "invalid_request")


# -- introspection -------------------------------------------------------------------


def test_introspection(http: TestClient, engine: Engine) -> None:
    cid, key = new_client(engine, scopes="user/*.rs system/*.rs", users=True)
    caller = system_token(http, key, cid, "system/*.rs")
    token = user_token(http, key, cid, "user/*.rs", organization="A81001", purpose="ETREAT")
    r = http.post("/fhir/auth/introspect", data={"token": token}, headers=bearer(caller))
    assert r.status_code == 200
    info = r.json()
    assert info["active"] is True
    assert info["client_id"] == cid and info["scope"] == "user/*.rs"
    assert info["purpose_of_use"] == "ETREAT" and info["organization"] == "A81001"
    assert info["exp"] > time.time()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert http.post("/fhir/auth/introspect", data={"token": tampered},
                     headers=bearer(caller)).json() == {"active": False}
    # with a client assertion instead of a bearer token
    form = {"token": token, "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(key, cid, TOKEN_URL)}
    assert http.post("/fhir/auth/introspect", data=form).json()["active"] is True
    # unauthenticated callers learn nothing
    assert http.post("/fhir/auth/introspect", data={"token": token}).status_code == 401
