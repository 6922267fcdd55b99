"""The route table: method + path segments -> (interaction, handler).

Framework-free (after Medplum's fhir-router): the HTTP layer and batch/transaction
entries both call :func:`handle`, so an entry of a Bundle goes through exactly the same
authorisation, handler and disclosure choke point as a direct request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from exchange.db.engine import read_tx, write_tx
from exchange.interactions import history, read, write
from exchange.interactions.audit_log import check_log_access, read_event
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError, NotFound
from exchange.pipeline.context import RequestContext
from exchange.services import Services
from exchange.validation import SERVED

Handler = Callable[[Services, RequestContext, FhirRequest, Connection], FhirResponse]


@dataclass(frozen=True)
class Route:
    interaction: str
    handler: Handler
    writes: bool = False
    resource_type: str | None = None
    resource_id: str | None = None
    operation: str | None = None


def _search(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.interactions.search import search_handler

    return search_handler(svc, ctx, req, conn)


def _capabilities(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.interactions.capabilities import capabilities

    return capabilities(svc, ctx, req, conn)


def _bundle(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.interactions.bundle import bundle_handler

    return bundle_handler(svc, ctx, req, conn)


def _operation(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.operations.registry import run_operation

    return run_operation(svc, ctx, req, conn)


def _type(name: str) -> str:
    if name not in SERVED:
        raise NotFound(f"Resource type {name[:64]!r} is not supported by this server")
    return name


def _not_allowed(method: str, what: str) -> FhirError:
    return FhirError("not-supported", f"{method} is not allowed on {what}", status=405)


def resolve(req: FhirRequest) -> Route:
    """Find the route for a request or raise a FhirError (404 / 405)."""
    m, p = req.method.upper(), req.parts
    n = len(p)
    if m == "HEAD":
        m = "GET"
    if n == 0:
        if m == "GET":
            return Route("search-system", _search)
        if m == "POST":
            return Route("batch", _bundle)  # batch vs transaction decided from the body
        raise _not_allowed(m, "the server base")
    head = p[0]
    if head == "metadata" and n == 1:
        if m == "GET":
            return Route("capabilities", _capabilities)
        raise _not_allowed(m, "metadata")
    if head == "_history" and n == 1:
        if m == "GET":
            return Route("history-system", history.history)
        raise _not_allowed(m, "_history")
    if head == "_search" and n == 1 and m == "POST":
        return Route("search-system", _search)
    if head.startswith("$") and n == 1:
        return Route("operation", _operation, writes=m == "POST", operation=head)
    rtype = _type(head)
    if n == 1:
        table = {
            "GET": Route("search-type", _search, resource_type=rtype),
            "POST": Route("create", write.create, True, rtype),
            "PUT": Route("update", write.conditional_update, True, rtype),
            "DELETE": Route("delete", write.conditional_delete, True, rtype),
        }
        if m in table:
            return table[m]
        raise _not_allowed(m, f"{rtype} (type level)")
    second = p[1]
    if n == 2 and second == "_search":
        if m == "POST":
            return Route("search-type", _search, resource_type=rtype)
        raise _not_allowed(m, f"{rtype}/_search")
    if n == 2 and second == "_history":
        if m == "GET":
            return Route("history-type", history.history, resource_type=rtype)
        raise _not_allowed(m, f"{rtype}/_history")
    if n == 2 and second.startswith("$"):
        return Route("operation", _operation, writes=False, resource_type=rtype, operation=second)
    res_id = second
    if n == 2:
        table = {
            "GET": Route("read", read_event if rtype == "AuditEvent" else read.read, False, rtype, res_id),
            "PUT": Route("update", write.update, True, rtype, res_id),
            "PATCH": Route("patch", write.patch, True, rtype, res_id),
            "DELETE": Route("delete", write.delete, True, rtype, res_id),
        }
        if m in table:
            return table[m]
        raise _not_allowed(m, f"{rtype}/{{id}}")
    third = p[2]
    if n == 3 and third == "_history" and m == "GET":
        return Route("history-instance", history.history, False, rtype, res_id)
    if n == 4 and third == "_history" and m == "GET":
        return Route("vread", read.vread, False, rtype, res_id)
    if n == 3 and third.startswith("$"):
        return Route("operation", _operation, False, rtype, res_id, third)
    if n == 3 and rtype == "Patient" and m == "GET" and third in SERVED:
        return Route("search-type", _search, False, third, None)
    raise NotFound(f"No such endpoint: {req.method} /{'/'.join(p)[:200]}")


def authorize(svc: Services, ctx: RequestContext) -> None:
    """Scope enforcement for one interaction (SMART scopes; raises 403), and the access
    log's own rule (information-governance and system requesters only)."""
    checker = svc.extras.get("check_access")
    if checker is not None:
        checker(ctx.requester, ctx.interaction, ctx.resource_type)
    if ctx.resource_type == "AuditEvent" and svc.settings.audit_enabled:
        check_log_access(ctx)


def handle(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection | None = None) -> FhirResponse:
    """Route, authorise and run one interaction, in its own transaction unless ``conn``."""
    route = resolve(req)
    ctx.interaction = route.interaction
    ctx.resource_type = route.resource_type
    ctx.resource_id = route.resource_id
    ctx.operation = route.operation
    if ctx.gate is None and ctx.parent is None:
        ctx.gate = svc.gate
    authorize(svc, ctx)
    if conn is not None or route.interaction in ("batch",):
        return route.handler(svc, ctx, req, conn)  # type: ignore[arg-type]
    tx = write_tx if route.writes else read_tx
    with tx(svc.engine) as c:
        return route.handler(svc, ctx, req, c)
