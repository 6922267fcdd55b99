"""The exchange as an OAuth 2.0 authorisation server: grants, access tokens, introspection.

* ``client_credentials`` with a ``private_key_jwt`` client assertion -- SMART Backend
  Services (https://hl7.org/fhir/smart-app-launch/backend-services.html); ``system/``
  scopes only.
* ``urn:ietf:params:oauth:grant-type:jwt-bearer`` -- RFC 7523 §2.1 -- the same client
  authentication plus a user assertion naming the practitioner; ``user/`` scopes (or
  ``patient/`` scopes for a session bound to one patient).

Granted scopes are requested ∩ registered. Access tokens are JWTs (RFC 9068 ``at+jwt``)
signed ES384 by the exchange's own key, living at most ``settings.token_lifetime``
(<= 300 s). :func:`introspect` answers RFC 7662.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from exchange.auth import jws
from exchange.auth.assertions import (
    TokenError,
    UserClaims,
    verify_client_assertion,
    verify_user_assertion,
)
from exchange.auth.keys import load_keys
from exchange.auth.scopes import confine, grant
from exchange.settings import Settings

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_TYP = "at+jwt"
MAX_TOKEN_LIFETIME = 300


def token_url(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + "/auth/token"


def introspection_url(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + "/auth/introspect"


def jwks_url(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + "/.well-known/jwks.json"


def token_lifetime(settings: Settings) -> int:
    return max(1, min(int(settings.token_lifetime), MAX_TOKEN_LIFETIME))


def mint_access_token(
    settings: Settings,
    *,
    client_id: str,
    scopes: list[str] | tuple[str, ...],
    kind: str = "system",
    practitioner_id: str | None = None,
    name: str | None = None,
    role: str | None = None,
    organization: str | None = None,
    purpose_of_use: str | None = None,
    break_glass_reason: str | None = None,
    patient_id: str | None = None,
    now: int | None = None,
    lifetime: int | None = None,
    dev: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token with the exchange's current key; returns (token, claims).

    The token endpoint uses this after authenticating the client. Other areas' tests may
    call it directly as a shortcut (the token is only accepted by ``authenticate`` if
    ``client_id`` is a registered, enabled client, or the token was minted with
    ``dev=True`` and ``settings.dev_mode`` is on).
    """
    now = int(time.time()) if now is None else now
    life = token_lifetime(settings) if lifetime is None else min(lifetime, token_lifetime(settings))
    claims: dict[str, Any] = {
        "iss": settings.base_url,
        "aud": settings.base_url,
        "sub": (practitioner_id or patient_id or client_id) if kind != "system" else client_id,
        "client_id": client_id,
        "kind": kind,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + life,
        "jti": str(uuid.uuid4()),
    }
    optional = {
        "name": name,
        "role": role,
        "organization": organization,
        "purpose_of_use": purpose_of_use,
        "break_glass_reason": break_glass_reason,
        "patient": patient_id,
    }
    claims.update({k: v for k, v in optional.items() if v is not None})
    if dev:
        claims["dev"] = True
    signer = load_keys(settings).current
    headers = {"kid": signer.kid, "typ": ACCESS_TOKEN_TYP}
    return jws.sign(claims, signer.key, signer.alg, headers), claims


def _one(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, list):
        if len(value) > 1:
            raise TokenError("invalid_request", f"parameter {name} is repeated")
        value = value[0] if value else None
    return value if value else None


def issue_token(
    conn: Connection, settings: Settings, form: Mapping[str, Any], *, now: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Handle one token request (form parameters): (RFC 6749 §5.1 body, token claims).

    ``form`` values may be strings or lists (repeated parameters are refused). Raises
    :class:`TokenError` for every §5.2 error. Consumed assertion jtis are written on
    ``conn``; the caller should commit even when a TokenError is raised.
    """
    now = int(time.time()) if now is None else now
    grant_type = _one(form, "grant_type")
    if grant_type not in (GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER):
        raise TokenError("unsupported_grant_type", "grant_type must be client_credentials or jwt-bearer")
    url = token_url(settings)
    client = verify_client_assertion(
        conn,
        assertion_type=_one(form, "client_assertion_type"),
        assertion=_one(form, "client_assertion"),
        client_id=_one(form, "client_id"),
        token_url=url,
        now=now,
    )
    requested = _one(form, "scope")
    if not requested:
        raise TokenError("invalid_request", "scope is required", client_id=client.client_id)
    try:
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            user = None
            scopes = grant(requested, client.scopes, ("system",))
        else:
            user = verify_user_assertion(conn, client, _one(form, "assertion"), token_url=url, now=now)
            scopes = _user_scopes(requested, client.scopes, user)
        if not scopes:
            raise TokenError("invalid_scope", "none of the requested scopes can be granted")
    except TokenError as exc:
        exc.client_id = client.client_id
        raise
    token, claims = _mint_for(settings, client.client_id, client.organizations, scopes, user, now)
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - now,
        "scope": " ".join(scopes),
    }
    return body, claims


def _user_scopes(requested: str, registered: tuple[str, ...], user: UserClaims) -> list[str]:
    if user.organization is None:  # a patient session: its own record only
        return grant(requested, registered, ("patient",))
    contexts = ("user", "patient") if user.patient_id else ("user",)
    return confine(grant(requested, registered, contexts))


def _mint_for(
    settings: Settings,
    client_id: str,
    organizations: tuple[str, ...],
    scopes: list[str],
    user: UserClaims | None,
    now: int,
) -> tuple[str, dict[str, Any]]:
    if user is None:
        return mint_access_token(
            settings,
            client_id=client_id,
            scopes=scopes,
            kind="system",
            organization=organizations[0] if organizations else None,
            now=now,
        )
    patient_bound = all(s.startswith("patient/") for s in scopes)
    return mint_access_token(
        settings,
        client_id=client_id,
        scopes=scopes,
        kind="patient" if user.organization is None else "user",
        practitioner_id=user.practitioner_id,
        name=user.name,
        role=user.role,
        organization=user.organization,
        purpose_of_use=user.purpose_of_use,
        break_glass_reason=user.break_glass_reason,
        patient_id=user.patient_id if patient_bound else None,
        now=now,
    )


INTROSPECTION_FIELDS = (
    "scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "kind", "name",
    "role", "organization", "purpose_of_use", "break_glass_reason", "patient",
)


def introspection_response(claims: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 7662 §2.2: ``{"active": false}`` for anything not currently valid."""
    if claims is None:
        return {"active": False}
    out: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    out.update({k: claims[k] for k in INTROSPECTION_FIELDS if k in claims})
    return out
