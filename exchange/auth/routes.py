"""HTTP endpoints of the authorisation server and SMART discovery.

* ``GET /fhir/.well-known/smart-configuration`` -- SMART App Launch 2.x
  "Conformance" (https://hl7.org/fhir/smart-app-launch/conformance.html); public.
* ``POST /fhir/auth/token`` -- RFC 6749 §3.2 / §5 token endpoint (form body; errors as
  RFC 6749 §5.2 JSON, never OperationOutcome, since OAuth clients expect that).
* ``POST /fhir/auth/introspect`` -- RFC 7662, for callers holding a valid token or
  presenting a client assertion.
* ``GET /fhir/.well-known/jwks.json`` -- the exchange's public signing keys.

The engine and settings come from ``request.app.state``. Every token request is passed
to ``request.app.state.audit_token_request(outcome, client_id, detail)`` when the app
provides that hook.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from exchange.auth.assertions import TokenError, verify_client_assertion
from exchange.auth.authenticate import TokenRejected, authenticate, validate_token
from exchange.auth.clients import is_active
from exchange.auth.jws import SMART_ALGS
from exchange.auth.keys import load_keys
from exchange.auth.token import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    introspection_response,
    introspection_url,
    issue_token,
    jwks_url,
    token_lifetime,
    token_url,
)
from exchange.db.engine import write_tx
from exchange.outcome import FhirError
from exchange.settings import Settings

router = APIRouter()
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
log = logging.getLogger("exchange.auth")
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SCOPES_SUPPORTED = [
    "system/*.rs", "system/*.cruds", "system/*.read", "system/*.write",
    "user/*.rs", "user/*.cruds", "user/*.read", "user/*.write",
    "patient/*.rs", "patient/*.read",
]


def smart_configuration(settings: Settings) -> dict[str, Any]:
    """The SMART App Launch 2.x ``.well-known/smart-configuration`` document."""
    return {
        "issuer": settings.base_url,
        "jwks_uri": jwks_url(settings),
        "token_endpoint": token_url(settings),
        "introspection_endpoint": introspection_url(settings),
        "grant_types_supported": [GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(SMART_ALGS),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": [],  # no browser-based (authorization code) flows
        "capabilities": [
            "client-confidential-asymmetric",
            "permission-v1",
            "permission-v2",
            "permission-patient",
            "permission-user",
        ],
    }


def smart_security_extension(settings: Settings) -> dict[str, Any]:
    """``CapabilityStatement.rest.security`` announcing SMART on FHIR and its OAuth URIs."""
    return {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART Backend Services (private_key_jwt, RS384/ES384)",
            }
        ],
        "extension": [
            {
                "url": SMART_OAUTH_URIS,
                "extension": [
                    {"url": "token", "valueUri": token_url(settings)},
                    {"url": "introspect", "valueUri": introspection_url(settings)},
                ],
            }
        ],
    }


def _state(request: Request) -> tuple[Engine, Settings]:
    return request.app.state.engine, request.app.state.settings


async def _form(request: Request) -> dict[str, list[str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise TokenError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise TokenError("invalid_request", "request body too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=False, max_num_fields=32)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenError("invalid_request", "malformed form body") from exc


def _oauth_error(exc: TokenError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="exchange", error="invalid_client"'
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _issue(engine: Engine, settings: Settings, form: dict[str, list[str]]):
    with write_tx(engine) as conn:
        try:
            return issue_token(conn, settings, form)
        except TokenError as exc:
            return exc  # returned, not raised: consumed assertion jtis are committed


async def _audit(request: Request, outcome: str, client_id: str | None, detail: dict) -> bool:
    """Record the token request; False when the access log could not record it."""
    hook = getattr(request.app.state, "audit_token_request", None)
    if hook is None:
        return True
    try:
        await run_in_threadpool(hook, outcome, client_id, detail)
    except Exception:  # noqa: BLE001 - any failure of the log: refuse, never a framework 500
        log.exception("token request not recorded: the access log is unavailable")
        return False
    return True


def _log_unavailable() -> JSONResponse:
    """No access without a record (issue 7): a token request the access log could not
    record gets no token, as a 503 OAuth error (RFC 6749 §5.2 error JSON; the code is
    the one §4.1.2.1 defines for a temporarily unavailable server)."""
    body = {"error": "temporarily_unavailable",
            "error_description": "The access log is unavailable; no token was issued. Try again later."}
    return JSONResponse(body, status_code=503, headers={**NO_STORE, "Retry-After": "5"})


@router.get("/fhir/.well-known/smart-configuration", include_in_schema=True)
def get_smart_configuration(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(request.app.state.settings))


@router.get("/fhir/.well-known/jwks.json")
def get_jwks(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    jwks = load_keys(settings).public_jwks(lifetime=token_lifetime(settings))
    return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=60"})


@router.post("/fhir/auth/token")
async def post_token(request: Request) -> JSONResponse:
    engine, settings = _state(request)
    form: dict[str, list[str]] = {}
    try:
        form = await _form(request)
        result = await run_in_threadpool(_issue, engine, settings, form)
    except TokenError as exc:
        result = exc
    grant_type = (form.get("grant_type") or [None])[0]
    if isinstance(result, TokenError):
        detail = {"grant_type": grant_type, "error": result.error, "reason": result.description}
        if not await _audit(request, "failure", result.client_id, detail):
            return _log_unavailable()
        return _oauth_error(result)
    body, claims = result
    detail = {"grant_type": grant_type, **{k: v for k, v in claims.items() if k != "iss"}}
    if not await _audit(request, "success", claims["client_id"], detail):
        return _log_unavailable()
    return JSONResponse(body, headers=NO_STORE)


def _introspect(
    engine: Engine, settings: Settings, authorization: str | None, form: dict[str, list[str]]
) -> dict[str, Any]:
    with write_tx(engine) as conn:
        if authorization:
            authenticate(conn, settings, authorization)
        else:
            verify_client_assertion(
                conn,
                assertion_type=(form.get("client_assertion_type") or [None])[0],
                assertion=(form.get("client_assertion") or [None])[0],
                client_id=(form.get("client_id") or [None])[0],
                token_url=token_url(settings),  # RFC 7523 §3: aud = the server's token URL
            )
        tokens = form.get("token") or []
        if len(tokens) != 1:
            raise TokenError("invalid_request", "exactly one token parameter is required")
        try:
            claims, issuer = validate_token(settings, tokens[0])
        except TokenRejected:
            return introspection_response(None)
        client_id = claims.get("client_id")
        if issuer is None and (not isinstance(client_id, str) or not is_active(conn, client_id)):
            return introspection_response(None)
        return introspection_response(claims)


@router.post("/fhir/auth/introspect")
async def post_introspect(request: Request) -> JSONResponse:
    engine, settings = _state(request)
    try:
        form = await _form(request)
        body = await run_in_threadpool(
            _introspect, engine, settings, request.headers.get("authorization"), form
        )
    except TokenError as exc:
        return _oauth_error(exc)
    except FhirError as exc:
        if exc.status != 401:
            raise
        headers = {**NO_STORE, **exc.headers}
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers=headers)
    return JSONResponse(body, headers=NO_STORE)
