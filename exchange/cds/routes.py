"""CDS Hooks endpoints (https://cds-hooks.hl7.org/2.0/ "Discovery" and "Calling a CDS Service").

``GET /cds-services`` lists one service, ``care-preferences-patient-view`` (hook
``patient-view``, context ``patientId``; no prefetch is needed because the exchange reads
its own record). ``POST /cds-services/care-preferences-patient-view`` returns cards.

Same authorisation and audit as the FHIR API: the bearer token is authenticated by the
app's authenticator, the SMART scopes must allow ``operation`` on Patient, the
disclosure gate decides what may be used (nothing withheld reaches a card), and the
request is recorded by the audit sink as interaction ``operation``, operation
``cds-patient-view`` before the response leaves (no record, no data: 503).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from exchange.cds.cards import build_cards
from exchange.db.engine import read_tx
from exchange.operations.eol_load import gather
from exchange.outcome import FhirError, Forbidden, Invalid, Issue, Unavailable, operation_outcome
from exchange.pipeline.context import ANONYMOUS, RequestContext

log = logging.getLogger("exchange.cds")

SERVICE_ID = "care-preferences-patient-view"
OPERATION = "cds-patient-view"
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

DISCOVERY: dict[str, Any] = {
    "services": [
        {
            "hook": "patient-view",
            "id": SERVICE_ID,
            "title": "Resuscitation and end of life preferences",
            "description": (
                "Shows current DNACPR / resuscitation decisions and conflicts between sources "
                "(critical), decisions past their review date (warning), lasting power of "
                "attorney and preferred place of death (info), from the shared care record."
            ),
            "usageRequirements": (
                "Send a bearer access token issued for the exchange (SMART scopes allowing "
                "read of Patient); context.patientId is the exchange's Patient id."
            ),
        }
    ]
}

router = APIRouter()


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json",
                    headers=headers or {})


@router.get("/cds-services")
async def discovery() -> Response:
    return _json(200, DISCOVERY)


class _Wiring:
    """What the CDS service needs from the running app (create_app's Services)."""

    def __init__(self, request: Request) -> None:
        state = request.app.state
        svc = getattr(state, "services", None)
        self.engine = svc.engine if svc is not None else state.engine
        self.settings = svc.settings if svc is not None else state.settings
        self.gate = svc.gate if svc is not None else getattr(state, "gate", None)
        self.audit = svc.audit if svc is not None else getattr(state, "audit", None)
        extras = svc.extras if svc is not None else {}
        self.authenticate = extras.get("authenticate")
        self.check_access = extras.get("check_access")
        self.request_authenticator = getattr(state, "authenticate", None)
        self.scoped_gate = extras.get("scoped_gate")


def parse_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """(patientId, request) from a CDS Hooks request body; Invalid when malformed."""
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise Invalid("The request body is not JSON", code="structure") from exc
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object", code="structure")
    if data.get("hook") != "patient-view":
        raise Invalid("This service answers the patient-view hook", expression="hook")
    if not isinstance(data.get("hookInstance"), str):
        raise Invalid("hookInstance is required", code="required", expression="hookInstance")
    context = data.get("context")
    pid = context.get("patientId") if isinstance(context, dict) else None
    if not isinstance(pid, str) or not _ID_RE.match(pid):
        raise Invalid("context.patientId is required and must be a FHIR id", code="required",
                      expression="context.patientId")
    return pid, data


def serve(w: _Wiring, ctx: RequestContext, body: bytes, authorization: str | None,
          request: Request | None = None) -> tuple[int, Any, dict[str, str]]:
    """Synchronous core: authenticate, authorise, gather, build cards. Returns (status, json, headers)."""
    pid, _data = parse_request(body)
    ctx.resource_id = pid
    ctx.patients.add(pid)
    if w.authenticate is not None and w.settings.auth_enabled:
        with read_tx(w.engine) as conn:
            ctx.requester = w.authenticate(conn, w.settings, authorization)
    elif w.request_authenticator is not None and request is not None:
        ctx.requester = w.request_authenticator(request)
    elif w.settings.auth_enabled:
        raise FhirError("security", "Authorisation is enabled but no authenticator is configured", status=500)
    if w.check_access is not None:
        w.check_access(ctx.requester, "operation", "Patient")
    if ctx.requester.kind == "patient" and ctx.requester.patient_id != pid:
        raise Forbidden("This token is bound to a different patient")
    ctx.gate = w.scoped_gate(w.gate, ctx.requester) if w.scoped_gate is not None else w.gate
    with read_tx(w.engine) as conn:
        got = gather(conn, ctx, pid)
    base = w.settings.base_url.rstrip("/")
    cards = build_cards(got.assessment, f"{base}/Patient/{pid}/$care-preferences")
    return 200, {"cards": cards}, {}


@router.post(f"/cds-services/{SERVICE_ID}")
async def patient_view(request: Request) -> Response:
    w = _Wiring(request)
    body = await request.body()
    ctx = RequestContext(
        requester=ANONYMOUS,
        method="POST",
        path=f"cds-services/{SERVICE_ID}",
        interaction="operation",
        resource_type="Patient",
        operation=OPERATION,
        remote_addr=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    authorization = request.headers.get("authorization")

    def run() -> tuple[int, Any, dict[str, str]]:
        try:
            if len(body) > w.settings.max_body_bytes:
                raise FhirError("too-long", "The request body is too large", status=413)
            result = serve(w, ctx, body, authorization, request)
        except FhirError as exc:
            result = (exc.status, exc.outcome(), dict(exc.headers))
        except Exception:  # noqa: BLE001 - never leak a traceback
            log.exception("CDS patient-view failed")
            result = (500, operation_outcome([Issue("exception", "An internal error occurred; it has been logged")]), {})
        ctx.outcome_status = result[0]
        if w.audit is not None:
            try:
                w.audit.record(ctx)
            except Unavailable as exc:
                return exc.status, exc.outcome(), dict(exc.headers)
            except Exception:  # noqa: BLE001
                log.exception("audit write failed")
                oo = operation_outcome([Issue("transient", "The access log is unavailable; no data was returned")])
                return 503, oo, {"Retry-After": "5"}
        return result

    status, payload, headers = await run_in_threadpool(run)
    return _json(status, payload, headers)
