"""The route table: method + path segments -> (interaction, handler).

Framework-free (after Medplum's fhir-router): the HTTP layer and batch/transaction
entries both call :func:`handle`, so an entry of a Bundle goes through exactly the same
authorisation, handler and disclosure choke point as a direct request.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from exchange.db.engine import is_sqlite, read_tx, write_tx
from exchange.interactions import history, read, write
from exchange.interactions.audit_log import check_log_access, read_event
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import Conflict, FhirError, NotFound
from exchange.pipeline.context import RequestContext
from exchange.services import Services
from exchange.validation import SERVED

Handler = Callable[[Services, RequestContext, FhirRequest, Connection], FhirResponse]

#: a write that lost a race (unique key taken, serialisation failure, deadlock) is run
#: again from the start, in a new transaction, this many times in all
WRITE_ATTEMPTS = 3
_RETRYABLE_PG_CODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


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


def _operation_definition(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    from exchange.operations.definitions import read_definition

    return read_definition(svc, ctx, req, conn)


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
    if head == "OperationDefinition" and n == 2:  # the exchange's own definitions, read-only
        if m == "GET":
            return Route("capabilities", _operation_definition, False, "OperationDefinition", p[1])
        raise _not_allowed(m, "OperationDefinition/{id} (read-only)")
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
        types = _listed_types(ctx) if ctx.interaction == "search-system" else []
        if types:  # GET [base]?_type=A,B: each listed type, as a search of that type
            for t in types:
                checker(ctx.requester, "search-type", t)
        else:
            checker(ctx.requester, ctx.interaction, ctx.resource_type)
    if ctx.resource_type == "AuditEvent" and svc.settings.audit_enabled:
        check_log_access(ctx)


def _listed_types(ctx: RequestContext) -> list[str]:
    """The types a system search names in ``_type`` (empty: all types)."""
    from urllib.parse import parse_qsl

    return [t.strip() for k, v in parse_qsl(ctx.query or "") if k == "_type" for t in v.split(",") if t.strip()]


def _conditional(route: Route, req: FhirRequest) -> bool:
    """A write whose outcome depends on a search (If-None-Exist, conditional update/delete)."""
    if route.interaction == "create":
        return req.header("if-none-exist") is not None
    return route.handler in (write.conditional_update, write.conditional_delete)


def serialise_conditional(conn: Connection, resource_type: str) -> None:
    """On PostgreSQL, queue conditional writes on one resource type behind each other
    (transaction-scoped advisory lock), so the search each one makes sees the rows the
    previous one committed: racing If-None-Exist creates make one resource, not several.
    SQLite needs nothing: write transactions already hold the database lock."""
    if is_sqlite(conn):
        return
    key = int.from_bytes(hashlib.sha256(f"conditional:{resource_type}".encode()).digest()[:8], "big") >> 1
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _lost_race(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_PG_CODES


def _snapshot(ctx: RequestContext) -> tuple:
    return (set(ctx.patients), list(ctx.released), ctx.withheld, Counter(ctx.withheld_rules), ctx.redacted,
            list(ctx.informational))


def _restore(ctx: RequestContext, saved: tuple) -> None:
    (ctx.patients, ctx.released, ctx.withheld, ctx.withheld_rules, ctx.redacted, ctx.informational) = (
        set(saved[0]), list(saved[1]), saved[2], Counter(saved[3]), saved[4], list(saved[5]))


def audit_within(svc: Services, ctx: RequestContext, conn: Connection, resp: FhirResponse) -> Any:
    """Append the request's AuditEvent in its write transaction when asked to (API, CLI)."""
    if svc.audit is None or not ctx.audit_in_transaction or ctx.parent is not None:
        return None
    return svc.audit.append_in(conn, ctx, resp.status)


def audit_committed(svc: Services, ctx: RequestContext, appended: Any) -> None:
    if appended is not None and svc.audit is not None:
        svc.audit.committed(ctx, appended)


def handle(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection | None = None) -> FhirResponse:
    """Route, authorise and run one interaction, in its own transaction unless ``conn``.

    A write in its own transaction that loses a race with a concurrent writer (e.g. two
    PUTs creating the same new id on PostgreSQL: one insert hits the unique key) is
    rolled back and run again, where it sees the winner's row and becomes an update.
    """
    route = resolve(req)
    ctx.interaction = route.interaction
    ctx.resource_type = route.resource_type
    ctx.resource_id = route.resource_id
    ctx.operation = route.operation
    if ctx.gate is None and ctx.parent is None:
        limit = svc.extras.get("scoped_gate")  # the token's scopes on every path out
        ctx.gate = limit(svc.gate, ctx.requester) if limit is not None else svc.gate
    authorize(svc, ctx)
    conditional = route.writes and route.resource_type is not None and _conditional(route, req)
    if conn is not None or route.interaction in ("batch",):
        if conn is not None and conditional:
            serialise_conditional(conn, route.resource_type or "")
        return route.handler(svc, ctx, req, conn)  # type: ignore[arg-type]
    if not route.writes:
        with read_tx(svc.engine) as c:
            return route.handler(svc, ctx, req, c)
    saved = _snapshot(ctx)
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with write_tx(svc.engine) as c:
                if conditional:
                    serialise_conditional(c, route.resource_type or "")
                resp = route.handler(svc, ctx, req, c)
                appended = audit_within(svc, ctx, c, resp)
            audit_committed(svc, ctx, appended)
            return resp
        except DBAPIError as exc:
            if not _lost_race(exc):
                raise
            if attempt == WRITE_ATTEMPTS:
                raise Conflict("The resource was changed by a concurrent request; try again") from exc
            _restore(ctx, saved)
    raise AssertionError("unreachable")
