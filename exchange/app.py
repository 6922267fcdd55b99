"""create_app(settings): wiring only (design.md layout).

Builds the engine, the disclosure gate (consent), the audit sink and the
authenticator, and mounts: the FHIR facade at ``/fhir``, SMART discovery and the token
endpoint, CDS Hooks at ``/cds-services``, the IG console at ``/ig`` and the OpenAPI
document at ``/openapi.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from exchange import __version__
from exchange.api.fhir_endpoint import fhir_endpoint
from exchange.db.engine import DbLimits, make_engine
from exchange.outcome import Issue, operation_outcome
from exchange.pipeline.disclosure import PermitAll
from exchange.services import Services
from exchange.settings import Settings

log = logging.getLogger("exchange")
OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
FHIR_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def build_services(settings: Settings, engine=None) -> Services:  # noqa: ANN001
    engine = engine or make_engine(settings.database_url, limits=DbLimits.from_settings(settings))
    gate = PermitAll()
    if settings.consent_enabled:
        from consent.gate import ConsentGate

        gate = ConsentGate(engine, settings)
    svc = Services(settings=settings, engine=engine, gate=gate)
    if settings.audit_enabled:
        from exchange.audit.sink import AuditSink

        svc.audit = AuditSink(engine, settings)
        from exchange.audit.fhir import search_audit

        svc.extras["audit_search"] = search_audit
    if settings.auth_enabled:
        from exchange.auth.authenticate import authenticate
        from exchange.auth.scopes import check_access

        svc.extras["authenticate"] = authenticate
        svc.extras["check_access"] = check_access
        from exchange.auth.scoped_gate import scoped_gate

        svc.extras["scoped_gate"] = scoped_gate
    return svc


def create_app(settings: Settings | None = None, *, engine=None, services: Services | None = None) -> FastAPI:  # noqa: ANN001
    settings = settings or Settings.from_env()
    svc = services or build_services(settings, engine)
    app = FastAPI(title="Integrated care record exchange", version=__version__, openapi_url=None,
                  docs_url=None, redoc_url=None)
    app.state.services = svc
    app.state.engine = svc.engine
    app.state.settings = settings
    app.state.audit = svc.audit
    if svc.audit is not None:
        app.state.audit_token_request = _token_auditor(svc)
    _load_custom_search_parameters(svc)

    from exchange.auth.routes import router as smart_router
    from exchange.cds.routes import router as cds_router
    from exchange.console.routes import router as console_router

    for router in (smart_router, cds_router, console_router):  # before the /fhir catch-all
        app.include_router(router)

    async def openapi(_: Request) -> Response:
        return Response(OPENAPI_PATH.read_bytes(), media_type="application/json")

    async def health(_: Request) -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    app.add_route("/openapi.json", openapi, methods=["GET"])
    app.add_route("/healthz", health, methods=["GET"])
    app.add_route("/fhir", fhir_endpoint, methods=FHIR_METHODS)
    app.add_route("/fhir/{path:path}", fhir_endpoint, methods=FHIR_METHODS)

    app.add_exception_handler(StarletteHTTPException, _http_error_as_outcome)

    @app.on_event("shutdown")
    def _close() -> None:
        if svc.audit is not None and hasattr(svc.audit, "close"):
            svc.audit.close()

    return app


async def _http_error_as_outcome(request: Request, exc: StarletteHTTPException) -> Response:
    """Errors raised by the framework itself (no route matched, method not allowed, e.g. a
    path holding a newline) answer with an OperationOutcome like every other error."""
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "invalid" if exc.status_code < 500 else "exception")
    body = operation_outcome([Issue(code, str(exc.detail) if exc.detail else "Request not handled")])
    return Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/fhir+json",
                    headers=getattr(exc, "headers", None))


def _token_auditor(svc: Services):  # noqa: ANN202
    """Adapts the token endpoint's hook (outcome, client_id, claims/detail dict) to the sink."""

    def audit(outcome: str, client_id: str | None, detail: dict) -> None:
        d = dict(detail or {})
        summary = ", ".join(f"{k}={d[k]}" for k in ("grant_type", "error", "reason", "scope") if d.get(k))
        svc.audit.record_token_request(
            "0" if outcome == "success" else "4", client_id, summary or outcome,
            practitioner_id=d.get("sub") if d.get("kind") == "user" else None,
            practitioner_name=d.get("name"), role=d.get("role"), organization=d.get("organization"),
            purpose_of_use=d.get("purpose_of_use"),
        )

    return audit


def _load_custom_search_parameters(svc: Services) -> None:
    """Stored SearchParameter resources become active in every worker at start-up."""
    from sqlalchemy.exc import SQLAlchemyError

    from exchange.db.engine import read_tx
    from exchange.search.registry import load_custom

    try:
        with read_tx(svc.engine) as conn:
            load_custom(conn)
    except (SQLAlchemyError, Exception) as exc:  # noqa: BLE001 - an unmigrated db must not stop start-up
        log.warning("custom search parameters not loaded: %s", exc)
