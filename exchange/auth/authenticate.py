"""Bearer-token authentication of every FHIR request (RFC 6750; SMART App Launch 2 and
Backend Services "Access token"; RFC 9068 JWT access tokens; FHIR R4 security.html).

:func:`authenticate` turns an ``Authorization`` header into a
:class:`~exchange.pipeline.context.Requester`, or raises
:class:`~exchange.outcome.Unauthorized` (401 with ``WWW-Authenticate: Bearer``) for a
missing, malformed, expired, not-yet-valid or wrongly signed token, an unknown issuer
or audience, or a disabled client. The diagnostics never say which check failed.

Accepted tokens are the exchange's own (``iss`` = ``settings.base_url``, ``typ``
``at+jwt``, signed by a key in its JWKS) and those of configured trusted issuers
(:mod:`exchange.auth.trusted`). Only asymmetric algorithms from an allowlist; keys are
chosen by ``kid`` among configured keys only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from sqlalchemy import Connection, Engine

from exchange.auth.assertions import PURPOSES
from exchange.auth.clients import is_active
from exchange.auth.jws import SMART_ALGS, JWSError, split, verify_key
from exchange.auth.keys import CLOCK_SKEW, load_keys
from exchange.auth.scopes import confine
from exchange.auth.token import ACCESS_TOKEN_TYP, token_lifetime
from exchange.auth.trusted import DEFAULT_CLAIMS, TrustedIssuer, issuer_keys, load_trusted_issuers
from exchange.auth.verified import VERIFIED
from exchange.outcome import Unauthorized, Unavailable
from exchange.pipeline.context import ANONYMOUS, Requester
from exchange.settings import Settings

log = logging.getLogger(__name__)
INVALID = "The access token is missing, invalid or expired"


class TokenRejected(Exception):
    """Internal: why a token was refused (logged, never shown to the client)."""


def authenticate(conn: Connection | Engine, settings: Settings, authorization_header: str | None) -> Requester:
    """The requester behind ``authorization_header`` (ANONYMOUS when auth is off).

    Given an Engine, the token is verified first (which may fetch a trusted identity
    provider's keys over HTTP) and a read transaction is opened only for the client
    check, so no database connection is held while an identity provider answers."""
    if not settings.auth_enabled:
        return ANONYMOUS
    if not authorization_header:
        raise Unauthorized("Authentication required", error="")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized(INVALID, error="invalid_request")
    try:
        claims, issuer = validate_token(settings, token)
        requester = _requester(claims, issuer)
        if issuer is None or requester.client_id:
            if isinstance(conn, Engine):
                from exchange.db.engine import read_tx

                with read_tx(conn) as c:
                    _check_client(c, settings, claims, requester, own=issuer is None)
            else:
                _check_client(conn, settings, claims, requester, own=issuer is None)
    except TokenRejected as exc:
        log.info("bearer token refused: %s", exc)
        raise Unauthorized(INVALID) from exc
    return requester


def validate_token(
    settings: Settings, token: str, *, now: int | None = None
) -> tuple[dict[str, Any], TrustedIssuer | None]:
    """Verified claims and the trusted issuer (None = the exchange itself); else TokenRejected."""
    now = int(time.time()) if now is None else now
    try:
        header, unverified, _si, _sig = split(token)
    except JWSError as exc:
        raise TokenRejected(str(exc)) from exc
    iss = unverified.get("iss")
    try:
        if iss == settings.base_url:
            keyset = load_keys(settings)
            keys = keyset.public_jwks(now=now, lifetime=token_lifetime(settings))["keys"]
            claims = _verified_claims(token, keys, algorithms=SMART_ALGS, typ=ACCESS_TOKEN_TYP)
            audience, issuer = settings.base_url, None
        else:
            trusted = load_trusted_issuers(settings.trusted_issuers_file)
            issuer = trusted.get(iss) if isinstance(iss, str) else None
            if issuer is None:
                raise TokenRejected("unknown issuer")
            try:
                keys = issuer_keys(issuer, kid=header.get("kid"))
            except (httpx.HTTPError, ValueError, OSError) as exc:
                raise Unavailable("The identity provider's keys cannot be retrieved") from exc
            claims = _verified_claims(token, keys, algorithms=issuer.algorithms, require_kid=len(keys) != 1)
            audience = issuer.audience
    except JWSError as exc:
        raise TokenRejected(str(exc)) from exc
    _check_claims(claims, audience, now)
    return claims, issuer


def _verified_claims(token: str, keys: list[dict[str, Any]], *, algorithms: Any, require_kid: bool = True,
                     typ: str | None = None) -> dict[str, Any]:
    """The token's claims once its signature is valid under one of ``keys`` (the accepted
    keys now). A signature already verified with a key still in ``keys`` is not checked
    again (:mod:`exchange.auth.verified`); the time and audience checks always run."""
    hit = VERIFIED.get(token, keys)
    if hit is not None and _still_acceptable(hit.header, algorithms, require_kid, typ):
        return dict(hit.claims)
    header, claims, jwk = verify_key(token, keys, algorithms=algorithms, require_kid=require_kid, typ=typ)
    VERIFIED.put(token, header, claims, jwk)
    return dict(claims)


def _still_acceptable(header: dict[str, Any], algorithms: Any, require_kid: bool, typ: str | None) -> bool:
    """The header rules :func:`exchange.auth.jws.verify` applies, under today's settings."""
    if header.get("alg") not in set(algorithms):
        return False
    if require_kid and header.get("kid") is None:
        return False
    return typ is None or str(header.get("typ", "")).lower() == typ.lower()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(claims: dict[str, Any], audience: str, now: int) -> None:
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise TokenRejected("wrong audience")
    exp = claims.get("exp")
    if not _number(exp) or exp + CLOCK_SKEW < now:
        raise TokenRejected("expired or no exp")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not _number(value) or value > now + CLOCK_SKEW):
            raise TokenRejected(f"{name} in the future")


def _claim(claims: dict[str, Any], issuer: TrustedIssuer | None, field: str) -> Any:
    mapping = DEFAULT_CLAIMS if issuer is None else issuer.claims
    name = mapping.get(field, field)
    if field == "client_id" and issuer is not None and name not in claims:
        name = "azp" if "azp" in claims else name
    return claims.get(name)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise TokenRejected("malformed claim")
    return value or None


def _requester(claims: dict[str, Any], issuer: TrustedIssuer | None) -> Requester:
    raw_scope = _claim(claims, issuer, "scope")
    if raw_scope is None and issuer is not None:
        raw_scope = claims.get("scp")
    if isinstance(raw_scope, str):
        scopes = raw_scope.split()
    elif isinstance(raw_scope, list) and all(isinstance(s, str) for s in raw_scope):
        scopes = list(raw_scope)
    else:
        raise TokenRejected("no scopes")
    organization = _text(_claim(claims, issuer, "organization"))
    patient = _text(_claim(claims, issuer, "patient"))
    practitioner = _text(_claim(claims, issuer, "practitioner_id"))
    if issuer is None:
        kind = claims.get("kind")
    else:
        kind = issuer.kind or ("user" if organization else "patient" if patient else "system")
    if kind not in ("system", "user", "patient"):
        raise TokenRejected("unknown token kind")
    purpose = _text(_claim(claims, issuer, "purpose_of_use"))
    if purpose is None and kind != "system" and issuer is not None:
        purpose = issuer.default_purpose_of_use
    reason = _text(_claim(claims, issuer, "break_glass_reason"))
    if purpose is not None and purpose not in PURPOSES:
        raise TokenRejected("unknown purpose_of_use")
    if purpose == "BTG" and not reason:
        raise TokenRejected("break glass without a reason")
    return Requester(
        kind=kind,
        client_id=_text(_claim(claims, issuer, "client_id")),
        scopes=frozenset(confine(scopes)),
        practitioner_id=practitioner if kind == "user" else None,
        practitioner_name=_text(_claim(claims, issuer, "name")),
        role=_text(_claim(claims, issuer, "role")),
        organization=organization,
        purpose_of_use=purpose,
        break_glass_reason=reason if purpose == "BTG" else None,
        patient_id=patient,
        token_id=_text(claims.get("jti")),
        issuer=claims.get("iss"),
    )


def _check_client(
    conn: Connection, settings: Settings, claims: dict[str, Any], requester: Requester, *, own: bool
) -> None:
    """Disabled clients lose their tokens at once; our own tokens need a known client."""
    if not requester.client_id:
        raise TokenRejected("no client")
    active = is_active(conn, requester.client_id)
    if active is False:
        raise TokenRejected("client disabled")
    if active is None and own and not (settings.dev_mode and claims.get("dev") is True):
        raise TokenRejected("client not registered")
