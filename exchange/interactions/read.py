"""read and vread (FHIR R4 http.html#read, http.html#vread), with conditional read.

A read returns the stored bytes of the current version, after the disclosure choke
point. ``If-None-Match`` / ``If-Modified-Since`` give 304 (http.html#cread).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from sqlalchemy import Connection

from exchange.interactions.types import FhirRequest, FhirResponse, http_date, resource_headers
from exchange.outcome import Gone, NotFound
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release_or_refuse
from exchange.repository import store
from exchange.repository.stored import StoredResource
from exchange.services import Services


def _not_modified(req: FhirRequest, res: StoredResource) -> bool:
    inm = req.header("if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or res.etag in tags or f'"{res.version_id}"' in tags
    ims = req.header("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return res.last_updated.replace(microsecond=0) <= since
    return False


def _serve(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection, res: StoredResource,
           not_found: str | None = None) -> FhirResponse:
    # the token's scopes, granular constraints included, are the gate's first rules
    # (exchange/auth/scoped_gate.py): a refusal there is a disclosed 403
    shown = release_or_refuse(conn, ctx, res, not_found)
    headers = resource_headers(shown, svc.base_url)
    headers.pop("Location", None)
    if _not_modified(req, shown):
        return FhirResponse(status=304, headers=headers, resource=shown)
    return FhirResponse(status=200, body=shown.content, headers=headers, resource=shown)


def read(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype, rid = req.parts[0], req.parts[1]
    res = store.read_current(conn, rtype, rid)
    if res is None:
        raise NotFound(f"Resource {rtype}/{rid} is not known")
    if res.deleted:
        raise Gone(f"Resource {rtype}/{rid} was deleted", headers={"ETag": res.etag, "Last-Modified": http_date(res)})
    return _serve(svc, ctx, req, conn, res)


def vread(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype, rid, vid = req.parts[0], req.parts[1], req.parts[3]
    absent = f"Version {vid[:20]} of {rtype}/{rid[:64]} is not known"
    if not vid.isdigit() or len(vid) > 9:  # versionId is a positive integer within the column
        raise NotFound(absent)
    res = store.read_version(conn, rtype, rid, int(vid))
    if res is None:
        raise NotFound(absent)
    if res.deleted:
        raise Gone(f"Version {vid} of {rtype}/{rid} is a deletion", headers={"ETag": res.etag})
    # a withheld version answers exactly as an absent one would (no existence probing)
    return _serve(svc, ctx, req, conn, res, not_found=absent)
