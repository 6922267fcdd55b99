"""Instance, type and system history (FHIR R4 http.html#history).

Newest first, ``_since`` (instant), ``_at`` is not supported (400), ``_count`` and
paging. Paging is keyset on the version sequence (which only grows), so pages are
stable while new versions are written; the cursor is signed and bound to the
requester. Every version passes the disclosure choke point; a deletion entry carries
only its request and response.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection, select

from exchange.db.tables import resource_version as rv
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError, Invalid
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release
from exchange.repository.store import _row_to_stored, fhir_instant
from exchange.search import cursor as paging
from exchange.services import Services

ALLOWED = {"_count", "_since", "_cursor", "_format", "_pretty"}


def _parse_instant(value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"_since must be an instant, got {value!r}", code="value", expression="_since") from None
    if ts.tzinfo is None:
        raise Invalid("_since must include a time zone", code="value", expression="_since")
    return ts


def history(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    parts = req.parts
    rtype = parts[0] if parts and parts[0] != "_history" else None
    res_id = parts[1] if len(parts) == 3 else None
    for k, _ in req.params:
        if k not in ALLOWED:
            if k == "_at":
                raise FhirError("not-supported", "_at is not supported on history", status=400)
            raise FhirError("not-supported", f"Unknown history parameter {k!r}", status=400, expression=k)
    count = _count(svc, req.param("_count"))
    since = _parse_instant(req.param("_since")) if req.param("_since") else None
    before: int | None = None
    if req.param("_cursor"):
        payload = paging.decode(svc.settings, ctx, req.param("_cursor") or "")
        try:
            before = int(payload.get("before", 0))
        except (TypeError, ValueError):
            raise Invalid("Invalid paging cursor", expression="_cursor") from None
    q = select(rv)
    if rtype:
        q = q.where(rv.c.res_type == rtype)
    if res_id:
        q = q.where(rv.c.res_id == res_id)
    if since is not None:
        q = q.where(rv.c.last_updated >= since)
    if before is not None:
        q = q.where(rv.c.seq < before)
    from exchange.pipeline.disclosure import narrow

    gate_filter = narrow(conn, ctx, rtype, rv.c.rid)
    if gate_filter is not None:
        q = q.where(gate_filter)
    rows = conn.execute(q.order_by(rv.c.seq.desc()).limit(count + 1)).fetchall()
    more = len(rows) > count
    rows = rows[:count]
    versions = [_row_to_stored(r) for r in rows]
    shown = release(conn, ctx, versions)
    entries = []
    base = svc.base_url
    for res in shown:
        url = f"{res.resource_type}/{res.id}"
        status = "201 Created" if res.version_id == 1 and not res.deleted else "204 No Content" if res.deleted else "200 OK"
        method = "DELETE" if res.deleted else ("POST" if res.method == "POST" else "PUT")
        req_url = res.resource_type if method == "POST" else url
        entry = (
            b'{"fullUrl":' + orjson.dumps(f"{base}/{url}")
            + (b',"resource":' + res.content if res.content else b"")
            + b',"request":' + orjson.dumps({"method": method, "url": req_url})
            + b',"response":' + orjson.dumps({"status": status, "etag": res.etag, "lastModified": fhir_instant(res.last_updated)})
            + b"}"
        )
        entries.append(entry)
    path = "/".join(parts)
    params = [(k, v) for k, v in req.params if k not in ("_cursor",)]
    links = [{"relation": "self", "url": _url(base, path, req.params)}]
    if more and rows:
        token = paging.encode(svc.settings, ctx, {"before": rows[-1].seq})
        links.append({"relation": "next", "url": _url(base, path, [*params, ("_cursor", token)])})
    body = (
        b'{"resourceType":"Bundle","type":"history","link":' + orjson.dumps(links)
        + b',"entry":[' + b",".join(entries) + b"]}"
    )
    return FhirResponse(status=200, body=body)


def _url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    q = urlencode(params)
    return f"{base}/{path}" + (f"?{q}" if q else "")


def _count(svc: Services, raw: str | None) -> int:
    if raw is None:
        return svc.settings.default_page_size
    if not raw.isdigit():
        raise Invalid(f"_count must be a non-negative integer, got {raw!r}", code="value", expression="_count")
    return max(1, min(int(raw), svc.settings.max_page_size))
