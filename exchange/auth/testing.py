"""Helpers for tests that need real SMART tokens (SMART Backend Services; RFC 7523).

The preferred way -- exactly what an outside client does -- is to make a key pair,
register it, sign assertions and call the token endpoint over HTTP::

    key = make_client_keypair()
    with write_tx(engine) as conn:
        register_client(conn, client_id="gp-system", jwks=key.public_jwks(),
                        scopes="user/*.rs system/*.rs", organizations="A81001",
                        may_assert_users=True)
    token = user_token(client, key, "gp-system", scope="user/*.rs",
                       practitioner="555123456789", organization="A81001", role="R8000")
    client.get("/fhir/Patient/1", headers=bearer(token))

:func:`quick_token` is a *shortcut* for other areas' tests: it registers a throwaway
client if needed and signs an access token directly with the exchange's key, bypassing
the token endpoint. Authorisation's own tests never use it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Engine

from exchange.auth import jws
from exchange.auth.assertions import CLIENT_ASSERTION_TYPE
from exchange.auth.clients import get_client, register_client
from exchange.auth.token import GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, mint_access_token
from exchange.db.engine import write_tx
from exchange.settings import Settings

__all__ = [
    "ClientKey",
    "bearer",
    "client_assertion",
    "make_client_keypair",
    "quick_token",
    "register_client",
    "request_token",
    "system_token",
    "user_assertion",
    "user_token",
]


@dataclass(frozen=True)
class ClientKey:
    """A client's private key with its kid and algorithm (RS384 or ES384)."""

    key: jws.PrivateKey
    kid: str
    alg: str

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [{**jws.public_jwk(self.key), "kid": self.kid, "alg": self.alg, "use": "sig"}]}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jws.sign(claims, self.key, self.alg, {"kid": self.kid, "typ": "JWT", **headers})


def make_client_keypair(alg: str = "ES384", kid: str | None = None) -> ClientKey:
    """A fresh client key pair (ES384 on P-384, or RS384 with a 2048-bit RSA key)."""
    if alg == "ES384":
        key: jws.PrivateKey = ec.generate_private_key(ec.SECP384R1())
    elif alg == "RS384":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError("SMART client keys are RS384 or ES384")
    return ClientKey(key, kid or jws.thumbprint(jws.public_jwk(key)), alg)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_assertion(key: ClientKey, client_id: str, token_url: str, **overrides: Any) -> str:
    """A client assertion as SMART Backend Services specifies (``overrides`` replace claims;
    an override of None removes the claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 240,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return key.sign({k: v for k, v in claims.items() if v is not None})


def user_assertion(
    key: ClientKey,
    client_id: str,
    token_url: str,
    *,
    practitioner: str | None = "555123456789",
    organization: str | None = None,
    role: str | None = "R8000",
    purpose: str = "TREAT",
    reason: str | None = None,
    name: str | None = "Dr Jane Example",
    patient: str | None = None,
    **overrides: Any,
) -> str:
    """The RFC 7523 user assertion naming a practitioner (or a patient session)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": practitioner,
        "aud": token_url,
        "exp": now + 240,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "organization": organization,
        "role": role,
        "purpose_of_use": purpose,
        "break_glass_reason": reason,
        "name": name,
        "patient": patient,
    }
    claims.update(overrides)
    return key.sign({k: v for k, v in claims.items() if v is not None})


def request_token(http: Any, form: dict[str, str], path: str = "/fhir/auth/token") -> Any:
    """POST a token request form (``http`` is a TestClient or httpx.Client)."""
    return http.post(path, data=form)


def _token_url(http: Any) -> str:
    """The token endpoint URL the exchange expects as assertion ``aud``."""
    settings: Settings = http.app.state.settings
    return settings.base_url.rstrip("/") + "/auth/token"


def system_token(http: Any, key: ClientKey, client_id: str, scope: str) -> str:
    """A backend-services (client_credentials) access token obtained over HTTP."""
    form = {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": scope,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": client_assertion(key, client_id, _token_url(http)),
    }
    response = request_token(http, form)
    if response.status_code != 200:
        raise AssertionError(f"token request failed: {response.status_code} {response.text}")
    return response.json()["access_token"]


def user_token(http: Any, key: ClientKey, client_id: str, scope: str, **user: Any) -> str:
    """A practitioner (jwt-bearer) access token obtained over HTTP; ``user`` goes to
    :func:`user_assertion` (practitioner, organization, role, purpose, reason, name, patient)."""
    url = _token_url(http)
    form = {
        "grant_type": GRANT_JWT_BEARER,
        "scope": scope,
        "assertion": user_assertion(key, client_id, url, **user),
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": client_assertion(key, client_id, url),
    }
    response = request_token(http, form)
    if response.status_code != 200:
        raise AssertionError(f"token request failed: {response.status_code} {response.text}")
    return response.json()["access_token"]


def quick_token(
    engine: Engine,
    settings: Settings,
    *,
    scope: str = "user/*.cruds",
    kind: str = "user",
    client_id: str = "test-shortcut-client",
    practitioner: str | None = "555123456789",
    organization: str | None = "A81001",
    role: str | None = "R8000",
    purpose: str | None = "TREAT",
    reason: str | None = None,
    name: str | None = "Dr Test",
    patient: str | None = None,
) -> str:
    """SHORTCUT for other areas' tests: an access token signed directly by the exchange's
    key (no token endpoint), for a client registered on the fly with the given scope."""
    with write_tx(engine) as conn:
        if get_client(conn, client_id) is None:
            throwaway = make_client_keypair()
            register_client(
                conn,
                client_id=client_id,
                jwks=throwaway.public_jwks(),
                scopes="system/*.cruds user/*.cruds patient/*.cruds",
                organizations=organization or "TEST",
            )
    token, _claims = mint_access_token(
        settings,
        client_id=client_id,
        scopes=scope.split(),
        kind=kind,
        practitioner_id=practitioner if kind != "system" else None,
        name=name if kind != "system" else None,
        role=role if kind == "user" else None,
        organization=organization,
        purpose_of_use=purpose if kind != "system" else None,
        break_glass_reason=reason,
        patient_id=patient,
    )
    return token
