"""The HTTP entry of the FHIR facade: one Starlette endpoint for every FHIR path.

Request path (docs/architecture.md): size limit -> content negotiation -> authenticate
(token -> Requester) -> route + scope check -> handler (inside one transaction) ->
disclosure choke point (inside handlers' data access) -> audit record made durable ->
response bytes. Errors anywhere become an OperationOutcome here, in one place.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from exchange.api.negotiation import check_request_type, check_search_form, response_type
from exchange.interactions.router import handle, resolve
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError, Issue, Unavailable, operation_outcome
from exchange.pipeline.context import ANONYMOUS, RequestContext, Requester
from exchange.services import Services

log = logging.getLogger("exchange.api")


def _pretty(body: bytes, pretty: bool) -> bytes:
    if not pretty or not body:
        return body
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)


def process(svc: Services, request_parts: dict) -> tuple[FhirResponse, RequestContext]:
    """Synchronous core of a request (runs in the thread pool)."""
    req: FhirRequest = request_parts["req"]
    ctx = RequestContext(
        requester=ANONYMOUS, method=req.method, path="/".join(req.parts), query=req.query_string,
        remote_addr=request_parts.get("remote"), user_agent=req.header("user-agent"),
        audit_in_transaction=True,
    )
    public = req.parts in (["metadata"],) and req.method in ("GET", "HEAD")
    resp: FhirResponse
    try:
        if len(req.body or b"") > svc.settings.max_body_bytes:
            raise FhirError("too-long", f"The request body exceeds {svc.settings.max_body_bytes} bytes", status=413)
        authenticate = svc.extras.get("authenticate")
        if svc.settings.auth_enabled and not public:
            if authenticate is None:
                raise FhirError("security", "Authorisation is enabled but no authenticator is configured", status=500)
            # the engine, not a connection: no connection is held while a trusted
            # identity provider's keys are fetched (exchange/auth/authenticate.py)
            ctx.requester = authenticate(svc.engine, svc.settings, req.header("authorization"))
        resp = handle(svc, ctx, req)
    except FhirError as exc:
        resp = FhirResponse(status=exc.status, body=orjson.dumps(exc.outcome()), headers=dict(exc.headers))
    except Exception:  # noqa: BLE001 - the last line of defence: never leak a traceback
        log.exception("unhandled error serving %s /%s", req.method, "/".join(req.parts))
        oo = operation_outcome([Issue("exception", "An internal error occurred; it has been logged")])
        resp = FhirResponse(status=500, body=orjson.dumps(oo))
    ctx.outcome_status = resp.status
    if svc.audit is not None and not public and not ctx.audited:
        try:
            svc.audit.record(ctx)
        except Unavailable as exc:
            # No access without a record: the response carries no data.
            resp = FhirResponse(status=503, body=orjson.dumps(exc.outcome()), headers=dict(exc.headers))
        except Exception:  # noqa: BLE001
            log.exception("audit write failed")
            oo = operation_outcome([Issue("transient", "The access log is unavailable; no data was returned")])
            resp = FhirResponse(status=503, body=orjson.dumps(oo), headers={"Retry-After": "5"})
    return resp, ctx


#: who sent a request refused before its token was read: unknown (the Authorization
#: header is not looked at, so nothing unverified is written to the log)
UNAUTHENTICATED = Requester(kind="anonymous")


def _loggable(text: str, limit: int = 4096) -> str:
    """What the client sent, as text the log can store (the request may have been refused
    for holding control characters, which some databases refuse too)."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text[:limit])


async def _refused_before_authentication(svc: Services, method: str, parts: list[str], query: str,
                                         headers: dict[str, str], remote: str | None,
                                         exc: FhirError) -> Response:
    """Answer a request refused before authentication (406, 413, 415, malformed search
    form) and record it in the access log as from an unknown requester, through the same
    sink as every other request ("every interaction", issue 7). If the log cannot record
    it the answer is a 503 (no access without a record; the refusal carried no data)."""
    status, body, out_headers = exc.status, orjson.dumps(exc.outcome()), dict(exc.headers)
    if svc.audit is not None:
        ctx = RequestContext(requester=UNAUTHENTICATED, method=method[:16], path=_loggable("/".join(parts)),
                             query=_loggable(query), remote_addr=remote, user_agent=headers.get("user-agent"))
        try:  # the interaction the request asked for, when its path names one
            route = resolve(FhirRequest(method=method, parts=parts, params=[], headers={}, body=None,
                                        base_url=svc.base_url))
            ctx.interaction, ctx.resource_type = route.interaction, route.resource_type
            ctx.resource_id, ctx.operation = route.resource_id, route.operation
        except FhirError:
            pass
        ctx.outcome_status = exc.status
        ctx.outcome_detail = _loggable(f"HTTP {exc.status}: {exc.diagnostics}")
        try:
            await svc.audit.record_async(ctx)
        except Exception as failure:  # noqa: BLE001 - any failure of the log: 503
            log.error("refused request not recorded: %s", failure)
            unavailable = Unavailable("The access log is unavailable; the request was not served")
            status, body = 503, orjson.dumps(unavailable.outcome())
            out_headers = dict(unavailable.headers)
    return Response(body, status_code=status, media_type="application/fhir+json", headers=out_headers)


async def fhir_endpoint(request: Request) -> Response:
    svc: Services = request.app.state.services
    path = request.path_params.get("path", "") or ""
    parts = [p for p in path.split("/") if p]
    params = parse_qsl(request.url.query, keep_blank_values=True)
    headers = {k.lower(): v for k, v in request.headers.items()}
    method = request.method.upper()
    pretty = any(k == "_pretty" and v.lower() == "true" for k, v in params)
    fmt = next((v for k, v in params if k == "_format"), None)
    try:
        media = response_type(headers.get("accept"), fmt)
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > svc.settings.max_body_bytes:
            raise FhirError("too-long", f"The request body exceeds {svc.settings.max_body_bytes} bytes", status=413)
        body = await request.body() if method in ("POST", "PUT", "PATCH") else None
        is_search = bool(parts) and parts[-1] == "_search"
        check_request_type(method, headers.get("content-type"), bool(body), is_search, method == "PATCH")
        if is_search and body:
            check_search_form(body)
        base = svc.base_url
        req = FhirRequest(method=method, parts=parts, params=params, headers=headers, body=body, base_url=base)
    except FhirError as exc:
        remote = request.client.host if request.client else None
        return await _refused_before_authentication(svc, method, parts, request.url.query, headers,
                                                    remote, exc)
    remote = request.client.host if request.client else None
    resp, _ctx = await run_in_threadpool(process, svc, {"req": req, "remote": remote})
    out_headers = dict(resp.headers)
    content = b"" if method == "HEAD" or resp.status in (204, 304) else _pretty(resp.body or b"", pretty)
    if resp.status == 201 and "Location" not in out_headers and resp.resource is not None:
        r = resp.resource
        out_headers["Location"] = f"{base}/{r.resource_type}/{r.id}/_history/{r.version_id}"
    if resp.status not in (201,) and "Location" in out_headers and method not in ("POST", "PUT"):
        out_headers.pop("Location")
    return Response(content=content, status_code=resp.status,
                    media_type=f"{media}; charset=utf-8" if content or method == "HEAD" else None, headers=out_headers)
