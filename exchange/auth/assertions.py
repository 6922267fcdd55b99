"""Client and user assertions at the token endpoint (SMART Backend Services
"Protocol details"; RFC 7523 §2.1 and §3; RFC 7521 §4.2).

A *client assertion* authenticates the client (``private_key_jwt``): signed RS384 or
ES384 by a key from the client's registered JWKS (selected by ``kid``, never by
``jku``/``x5u``), ``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint URL,
``exp`` no more than five minutes ahead, and a ``jti`` that is never accepted twice
while the assertion could still be valid -- enforced with a database row so that every
worker sees it.

A *user assertion* (the ``assertion`` of the jwt-bearer grant) names the practitioner:
signed by the same client, ``sub`` = SDS user id, ``organization`` (an ODS code the client
is registered for), ``role``, ``purpose_of_use`` (TREAT, ETREAT or BTG) and a
``break_glass_reason`` when the purpose is BTG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete
from sqlalchemy.dialects import postgresql, sqlite

from exchange.auth.clients import Client, get_client
from exchange.auth.jws import SMART_ALGS, JWSError, split, verify
from exchange.auth.keys import CLOCK_SKEW
from exchange.auth.tables import auth_used_jti

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
PURPOSES = ("TREAT", "ETREAT", "BTG")


class TokenError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2) from the token endpoint."""

    def __init__(
        self, error: str, description: str, *, status: int = 400, client_id: str | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.client_id = client_id

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class UserClaims:
    practitioner_id: str | None
    name: str | None
    organization: str | None
    role: str | None
    purpose_of_use: str
    break_glass_reason: str | None
    patient_id: str | None


def _audience_ok(aud: Any, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    return isinstance(aud, list) and expected in aud and all(isinstance(a, str) for a in aud)


def _check_times(claims: dict[str, Any], now: int, error: str, what: str) -> int:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError(error, f"{what} has no valid exp")
    if exp + CLOCK_SKEW < now:
        raise TokenError(error, f"{what} has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise TokenError(error, f"{what} exp is more than five minutes ahead")
    for claim in ("nbf", "iat"):
        value = claims.get(claim)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value > now + CLOCK_SKEW:
            raise TokenError(error, f"{what} {claim} is in the future")
    return int(exp)


def consume_jti(conn: Connection, client_id: str, jti: Any, exp: int, now: int) -> bool:
    """Record ``jti`` as used; False when it was already used (a replay)."""
    if not isinstance(jti, str) or not jti or len(jti) > 255 or not jti.isprintable():
        return False
    conn.execute(delete(auth_used_jti).where(auth_used_jti.c.expires_at < now))
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(auth_used_jti)
        .values(client_id=client_id, jti=jti, expires_at=exp + CLOCK_SKEW)
        .on_conflict_do_nothing()
        .returning(auth_used_jti.c.jti)  # rowcount is not reliable here on psycopg 3
    )
    return conn.execute(stmt).first() is not None


def verify_client_assertion(
    conn: Connection,
    *,
    assertion_type: str | None,
    assertion: str | None,
    client_id: str | None,
    token_url: str,
    now: int | None = None,
) -> Client:
    """The registered, enabled client that signed ``assertion`` (else ``invalid_client``)."""
    now = int(time.time()) if now is None else now
    if assertion_type != CLIENT_ASSERTION_TYPE or not assertion:
        raise TokenError("invalid_client", "private_key_jwt client authentication is required", status=401)
    try:
        _h, unverified, _si, _sig = split(assertion)
    except JWSError as exc:
        raise TokenError("invalid_client", "malformed client assertion", status=401) from exc
    iss = unverified.get("iss")
    # a client id is printable text; NUL and other controls cannot name a registered client
    if not isinstance(iss, str) or not iss.isprintable() or (client_id is not None and client_id != iss):
        raise TokenError("invalid_client", "client assertion iss does not name the client", status=401)
    client = get_client(conn, iss)
    if client is None or client.disabled:
        raise TokenError("invalid_client", "unknown or disabled client", status=401, client_id=iss)
    try:
        _header, claims = verify(assertion, client.jwks["keys"], algorithms=SMART_ALGS)
    except JWSError as exc:
        raise TokenError(
            "invalid_client", "client assertion signature is not valid", status=401, client_id=iss
        ) from exc
    try:
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise TokenError("invalid_client", "client assertion iss and sub must be the client_id")
        if not _audience_ok(claims.get("aud"), token_url):
            raise TokenError("invalid_client", "client assertion aud is not this token endpoint")
        exp = _check_times(claims, now, "invalid_client", "client assertion")
        if not consume_jti(conn, client.client_id, claims.get("jti"), exp, now):
            raise TokenError("invalid_client", "client assertion jti is missing or was already used")
    except TokenError as exc:
        exc.status, exc.client_id = 401, client.client_id
        raise
    return client


def verify_user_assertion(
    conn: Connection, client: Client, assertion: str | None, *, token_url: str, now: int | None = None
) -> UserClaims:
    """The practitioner (or patient session) that ``client`` asserts (else ``invalid_grant``)."""
    now = int(time.time()) if now is None else now
    if not client.may_assert_users:
        raise TokenError("unauthorized_client", "this client is not registered to assert users")
    if not assertion:
        raise TokenError("invalid_request", "the jwt-bearer grant needs an assertion")
    try:
        _header, claims = verify(assertion, client.jwks["keys"], algorithms=SMART_ALGS)
    except JWSError as exc:
        raise TokenError("invalid_grant", "user assertion signature is not valid") from exc
    if claims.get("iss") != client.client_id:
        raise TokenError("invalid_grant", "user assertion iss must be the client_id")
    if not _audience_ok(claims.get("aud"), token_url):
        raise TokenError("invalid_grant", "user assertion aud is not this token endpoint")
    exp = _check_times(claims, now, "invalid_grant", "user assertion")
    if not consume_jti(conn, client.client_id, claims.get("jti"), exp, now):
        raise TokenError("invalid_grant", "user assertion jti is missing or was already used")
    return _user_claims(client, claims)


def _text(claims: dict[str, Any], name: str, limit: int = 255) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise TokenError("invalid_grant", f"user assertion claim {name} is not valid")
    return value.strip()


def _user_claims(client: Client, claims: dict[str, Any]) -> UserClaims:
    sub = _text(claims, "sub")
    org = _text(claims, "organization")
    role = _text(claims, "role")
    patient = _text(claims, "patient", 64)
    purpose = _text(claims, "purpose_of_use") or ""
    reason = _text(claims, "break_glass_reason", 1000)
    name = _text(claims, "name")
    if not sub:
        raise TokenError("invalid_grant", "user assertion needs sub (the SDS user id)")
    if purpose not in PURPOSES:
        raise TokenError("invalid_grant", "purpose_of_use must be TREAT, ETREAT or BTG")
    if purpose == "BTG" and not reason:
        raise TokenError("invalid_grant", "break_glass_reason is required with purpose_of_use BTG")
    if purpose != "BTG":
        reason = None
    if org is None and role is None and patient is not None:
        # a patient (citizen) session bound to one record, e.g. a patient-facing app
        return UserClaims(sub, name, None, None, purpose, reason, patient)
    if not org or not role:
        raise TokenError("invalid_grant", "user assertion needs organization and role")
    if org not in client.organizations:
        raise TokenError("invalid_grant", "the client is not registered for this organisation")
    return UserClaims(sub, name, org, role, purpose, reason, patient)
