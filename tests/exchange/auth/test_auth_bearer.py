"""Bearer-token validation on every request (RFC 6750, RFC 9068): 401s for every way a
token can be wrong, dev tokens, authorisation switched off."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth import authenticate, jws
from exchange.auth.clients import register_client
from exchange.auth.keys import load_keys
from exchange.auth.testing import bearer, make_client_keypair, quick_token
from exchange.auth.token import mint_access_token
from exchange.db.engine import read_tx, write_tx
from exchange.outcome import Unauthorized
from exchange.pipeline.context import ANONYMOUS
from exchange.settings import Settings


@pytest.fixture
def cid(engine: Engine) -> str:
    client_id = f"bearer-{uuid.uuid4().hex[:8]}"
    with write_tx(engine) as conn:
        register_client(conn, client_id=client_id, jwks=make_client_keypair().public_jwks(),
                        scopes="system/*.rs", organizations="A81001")
    return client_id


def probe(http: TestClient, token: str | None, header: str | None = None):  # noqa: ANN201
    headers = {"Authorization": header} if header else bearer(token) if token else {}
    return http.get("/fhir/_probe/read/Patient", headers=headers)


def assert_401(response, *, error: bool = True) -> None:  # noqa: ANN001
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is error or 'error="invalid_request"' in challenge
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"


def own_claims(settings: Settings, cid: str, **changes: object) -> dict:
    now = int(time.time())
    claims = {"iss": settings.base_url, "aud": settings.base_url, "sub": cid, "client_id": cid,
              "kind": "system", "scope": "system/*.rs", "iat": now, "exp": now + 200,
              "jti": uuid.uuid4().hex}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign_own(settings: Settings, claims: dict, **headers: object) -> str:
    signer = load_keys(settings).current
    return jws.sign(claims, signer.key, signer.alg, {"kid": signer.kid, "typ": "at+jwt", **headers})


def test_valid_token_accepted(http: TestClient, auth_settings: Settings, cid: str) -> None:
    r = probe(http, sign_own(auth_settings, own_claims(auth_settings, cid)))
    assert r.status_code == 200 and r.json()["client_id"] == cid


def test_missing_header_gives_bare_challenge(http: TestClient) -> None:
    assert_401(probe(http, None), error=False)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer not.a.jwt"])
def test_malformed_headers(http: TestClient, header: str) -> None:
    assert_401(probe(http, None, header))


def test_expired_token(http: TestClient, auth_settings: Settings, cid: str) -> None:
    past = int(time.time()) - 1000
    token, _ = mint_access_token(auth_settings, client_id=cid, scopes=["system/*.rs"], now=past)
    assert_401(probe(http, token))


def test_within_clock_skew_still_accepted(http: TestClient, auth_settings: Settings, cid: str) -> None:
    now = int(time.time())
    token = sign_own(auth_settings, own_claims(auth_settings, cid, exp=now - 5, iat=now - 100))
    assert probe(http, token).status_code == 200


def test_nbf_in_future(http: TestClient, auth_settings: Settings, cid: str) -> None:
    now = int(time.time())
    assert_401(probe(http, sign_own(auth_settings, own_claims(auth_settings, cid, nbf=now + 600, exp=now + 800))))


def test_wrong_issuer_and_audience(http: TestClient, auth_settings: Settings, cid: str) -> None:
    assert_401(probe(http, sign_own(auth_settings, own_claims(auth_settings, cid, iss="http://evil/fhir"))))
    assert_401(probe(http, sign_own(auth_settings, own_claims(auth_settings, cid, aud="http://other/fhir"))))
    assert_401(probe(http, sign_own(auth_settings, own_claims(auth_settings, cid, aud=None))))


def test_wrongly_signed_tokens(http: TestClient, auth_settings: Settings, cid: str) -> None:
    claims = own_claims(auth_settings, cid)
    signer = load_keys(auth_settings).current
    # signed by another key presenting our kid
    attacker = make_client_keypair()
    assert_401(probe(http, jws.sign(claims, attacker.key, "ES384", {"kid": signer.kid, "typ": "at+jwt"})))
    # signed by another key with a jku header pointing at the attacker's keys
    assert_401(probe(http, attacker.sign(claims, typ="at+jwt", jku="http://127.0.0.1:9/jwks")))
    # payload changed after signing
    good = sign_own(auth_settings, claims)
    h, _p, s = good.split(".")
    escalated = jws.b64url_encode(orjson.dumps({**claims, "scope": "system/*.cruds"}))
    assert_401(probe(http, f"{h}.{escalated}.{s}"))


def test_alg_none_and_hmac_confusion(http: TestClient, auth_settings: Settings, cid: str) -> None:
    claims = own_claims(auth_settings, cid)
    signer = load_keys(auth_settings).current
    body = jws.b64url_encode(orjson.dumps(claims))
    none_header = jws.b64url_encode(orjson.dumps({"alg": "none", "kid": signer.kid, "typ": "at+jwt"}))
    assert_401(probe(http, f"{none_header}.{body}."))
    public_json = orjson.dumps(load_keys(auth_settings).public_jwks()["keys"][0])
    hs_header = jws.b64url_encode(orjson.dumps({"alg": "HS256", "kid": signer.kid, "typ": "at+jwt"}))
    mac = hmac.new(public_json, f"{hs_header}.{body}".encode(), hashlib.sha256).digest()
    assert_401(probe(http, f"{hs_header}.{body}.{jws.b64url_encode(mac)}"))


def test_token_type_must_be_access_token(http: TestClient, auth_settings: Settings, cid: str) -> None:
    signer = load_keys(auth_settings).current
    token = jws.sign(own_claims(auth_settings, cid), signer.key, signer.alg, {"kid": signer.kid})
    assert_401(probe(http, token))


def test_unregistered_client_and_dev_tokens(engine: Engine, auth_settings: Settings) -> None:
    token, _ = mint_access_token(auth_settings, client_id="nobody", scopes=["system/*.rs"])
    dev_token, _ = mint_access_token(auth_settings, client_id="nobody", scopes=["system/*.rs"], dev=True)
    with read_tx(engine) as conn:
        with pytest.raises(Unauthorized):
            authenticate(conn, auth_settings, f"Bearer {token}")
        with pytest.raises(Unauthorized):
            authenticate(conn, auth_settings, f"Bearer {dev_token}")  # not in dev mode
        who = authenticate(conn, auth_settings.with_(dev_mode=True), f"Bearer {dev_token}")
        assert who.client_id == "nobody" and who.kind == "system"
        with pytest.raises(Unauthorized):  # dev mode does not admit non-dev tokens of unknown clients
            authenticate(conn, auth_settings.with_(dev_mode=True), f"Bearer {token}")


def test_auth_disabled_is_anonymous(engine: Engine, auth_settings: Settings) -> None:
    with read_tx(engine) as conn:
        assert authenticate(conn, auth_settings.with_(auth_enabled=False), None) is ANONYMOUS


def test_quick_token_shortcut_for_other_areas(http: TestClient, engine: Engine, auth_settings: Settings) -> None:
    token = quick_token(engine, auth_settings, scope="user/*.rs", purpose="BTG", reason="cardiac arrest")
    who = probe(http, token).json()
    assert who["kind"] == "user" and who["purpose_of_use"] == "BTG"
    assert who["break_glass_reason"] == "cardiac arrest"
    patient = quick_token(engine, auth_settings, scope="patient/*.rs", kind="patient", patient="p9",
                          organization=None, role=None)
    assert probe(http, patient).json()["patient_id"] == "p9"


def test_break_glass_without_reason_in_token_rejected(http: TestClient, auth_settings: Settings, cid: str) -> None:
    claims = own_claims(auth_settings, cid, kind="user", purpose_of_use="BTG", organization="A81001")
    assert_401(probe(http, sign_own(auth_settings, claims)))
