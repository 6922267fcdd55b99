"""Search interactions (FHIR R4 search.html): type, system, compartment, POST _search,
and paging links. Parameter handling lives in :mod:`exchange.search`; this module only
adapts the request (GET query or form body) and hands back the Bundle bytes.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from sqlalchemy import Connection

from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError
from exchange.pipeline.context import RequestContext
from exchange.services import Services

FORM = "application/x-www-form-urlencoded"


def search_params(req: FhirRequest) -> list[tuple[str, str]]:
    params = [(k, v) for k, v in req.params if k not in ("_format", "_pretty")]
    if req.method.upper() == "POST":
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != FORM:
            raise FhirError("not-supported", f"POST _search takes {FORM}", status=415)
        body = (req.body or b"").decode("utf-8", errors="strict")
        params += parse_qsl(body, keep_blank_values=True)
    return params


def search_handler(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.search import service

    params = search_params(req)
    lenient = (req.prefer("handling") or "").lower() == "lenient"
    pages = [v for k, v in params if k == "_getpages"]
    if pages:
        body = service.search_page(conn, ctx, svc.settings, cursor=pages[0], base_url=svc.base_url)
        return FhirResponse(status=200, body=body)
    compartment = None
    if len(req.parts) == 3 and req.parts[0] == "Patient":
        compartment = ("Patient", req.parts[1])
        ctx.patients.add(req.parts[1])
    if ctx.resource_type == "AuditEvent" and "audit_search" in svc.extras:
        body = svc.extras["audit_search"](conn, ctx, svc.settings, params, svc.base_url)
        return FhirResponse(status=200, body=body)
    body = service.search(
        conn, ctx, svc.settings, resource_type=ctx.resource_type, params=params,
        compartment=compartment, lenient=lenient, base_url=svc.base_url,
    )
    return FhirResponse(status=200, body=body)
