"""The access log as FHIR: ``GET /fhir/AuditEvent?...`` and ``GET /fhir/AuditEvent/{id}``.

AuditEvents live in the append-only audit store (exchange/audit), not in the resource
tables, and are served only to information-governance and system requesters (IHE
BALP; issue 7). Reading the log is itself audited by the normal request path.
"""

from __future__ import annotations

from sqlalchemy import Connection

from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError, Forbidden, NotFound
from exchange.pipeline.context import RequestContext
from exchange.services import Services

#: national RBAC roles of information-governance staff (Privacy Officer, Caldicott Guardian)
IG_ROLES = frozenset({"R0001", "R5105"})
ALLOWED = ("read", "search-type")


def check_log_access(ctx: RequestContext) -> None:
    if ctx.interaction not in ALLOWED:
        raise FhirError("not-supported", "The access log is read-only (read and search only)", status=405)
    r = ctx.requester
    if r.kind in ("system", "anonymous"):
        return
    if r.kind == "user" and r.role in IG_ROLES:
        return
    raise Forbidden("The access log is available to information-governance and system clients only")


def read_event(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    if not svc.settings.audit_enabled:  # no audit store in use: AuditEvent is an ordinary type
        from exchange.interactions.read import read

        return read(svc, ctx, req, conn)
    from exchange.audit.fhir import read_audit

    body = read_audit(conn, req.parts[1], ctx)
    if body is None:
        raise NotFound(f"AuditEvent/{req.parts[1][:64]} is not known")
    return FhirResponse(status=200, body=body)
