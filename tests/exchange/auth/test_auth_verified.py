"""Verified-signature reuse (exchange/auth/verified.py): a token's signature is checked
once, and every other check still runs on every request."""

from __future__ import annotations

import importlib
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth import jws
from exchange.auth.authenticate import TokenRejected, validate_token
from exchange.auth.clients import register_client, set_disabled
from exchange.auth.keys import load_keys, rotate_keys
from exchange.auth.testing import bearer, make_client_keypair
from exchange.auth.verified import VERIFIED, VerifiedTokens
from exchange.db.engine import write_tx
from exchange.settings import Settings
from tests.exchange.auth.test_auth_bearer import own_claims, sign_own

authn = importlib.import_module("exchange.auth.authenticate")  # the package re-exports a function of that name


@pytest.fixture
def cid(engine: Engine) -> str:
    client_id = f"verified-{uuid.uuid4().hex[:8]}"
    with write_tx(engine) as conn:
        register_client(conn, client_id=client_id, jwks=make_client_keypair().public_jwks(),
                        scopes="system/*.rs", organizations="A81001")
    return client_id


@pytest.fixture
def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jws.verify_key

    def counting(token: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(authn, "verify_key", counting)
    return calls


def test_signature_checked_once_then_reused(auth_settings: Settings, cid: str, count_verifications: list[str]) -> None:
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    first, _ = validate_token(auth_settings, token)
    second, _ = validate_token(auth_settings, token)
    assert first == second and first["client_id"] == cid
    assert count_verifications == [token]


def test_tampered_copy_of_a_verified_token_is_refused(auth_settings: Settings, cid: str) -> None:
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    validate_token(auth_settings, token)
    head, body, sig = token.split(".")
    forged_body = jws.b64url_encode(jws.b64url_decode(body).replace(b'"system/*.rs"', b'"system/*.*"'))
    with pytest.raises(TokenRejected):
        validate_token(auth_settings, f"{head}.{forged_body}.{sig}")


def test_expiry_is_checked_on_every_use(auth_settings: Settings, cid: str) -> None:
    claims = own_claims(auth_settings, cid)
    token = sign_own(auth_settings, claims)
    validate_token(auth_settings, token)
    with pytest.raises(TokenRejected):
        validate_token(auth_settings, token, now=claims["exp"] + 3600)


def test_a_key_no_longer_accepted_ends_reuse(auth_settings: Settings, cid: str) -> None:
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    validate_token(auth_settings, token)
    later = int(time.time()) + 10_000
    rotate_keys(auth_settings, now=later)  # the signing key is retired ...
    rotate_keys(auth_settings, now=later + 10_000)  # ... and then pruned from the key file
    assert all(k.kid != jws.split(token)[0]["kid"] for k in load_keys(auth_settings).all)
    with pytest.raises(TokenRejected):
        validate_token(auth_settings, token)


def test_disabled_client_refused_even_with_a_verified_token(http: TestClient, engine: Engine,
                                                              auth_settings: Settings, cid: str) -> None:
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    assert http.get("/fhir/_probe/read/Patient", headers=bearer(token)).status_code == 200
    with write_tx(engine) as conn:
        set_disabled(conn, cid)
    assert http.get("/fhir/_probe/read/Patient", headers=bearer(token)).status_code == 401


def test_header_rules_apply_to_a_reused_signature(auth_settings: Settings, cid: str) -> None:
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    validate_token(auth_settings, token)
    header, claims, _si, _sig = jws.split(token)
    hit = VERIFIED.get(token, load_keys(auth_settings).public_jwks()["keys"])
    assert hit is not None
    assert not authn._still_acceptable(header, {"RS384"}, True, "at+jwt")  # algorithm no longer allowed
    assert not authn._still_acceptable(header, {header["alg"]}, True, "JWT")  # another token type
    assert authn._still_acceptable(header, {header["alg"]}, True, "at+jwt")


def test_table_is_bounded_and_drops_expired_entries() -> None:
    table = VerifiedTokens(max_entries=2)
    jwk = {"kty": "EC", "kid": "k"}
    now = time.time()
    for name in ("a", "b", "c"):
        table.put(name, {"alg": "ES384"}, {"exp": now + 100}, jwk)
    assert len(table) == 2 and table.get("a", [jwk]) is None and table.get("c", [jwk]) is not None
    table.put("old", {"alg": "ES384"}, {"exp": now - 1}, jwk)
    assert table.get("old", [jwk]) is None
    table.put("no-exp", {"alg": "ES384"}, {}, jwk)
    assert table.get("no-exp", [jwk]) is None
    assert table.get("c", [{"kty": "EC", "kid": "other"}]) is None


def test_no_connection_is_held_while_the_token_is_verified(engine: Engine, auth_settings: Settings, cid: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the engine, authenticate verifies the token (which may fetch an identity
    provider's keys over HTTP) before it takes a connection for the client check."""
    token = sign_own(auth_settings, own_claims(auth_settings, cid))
    held: list[int] = []
    real = authn.validate_token

    def watching(settings, tok, **kw):  # noqa: ANN001, ANN003, ANN202
        held.append(engine.pool.checkedout())
        return real(settings, tok, **kw)

    monkeypatch.setattr(authn, "validate_token", watching)
    who = authn.authenticate(engine, auth_settings, f"Bearer {token}")
    assert who.client_id == cid and held == [0]
