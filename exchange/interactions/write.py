"""create, update, patch and delete, plain and conditional (FHIR R4 http.html#create,
#update, #patch, #delete, #ccreate, #cond-update, #cdelete).

Rules implemented here:

* The server assigns ``id`` on create, ``meta.versionId`` and ``meta.lastUpdated`` on
  every write; a body's own meta.versionId/lastUpdated are ignored.
* An update whose content equals the current version (apart from meta.versionId and
  meta.lastUpdated) is a no-op: no new version (re-ingesting a feed changes nothing).
* Update of a resource that does not exist creates it only for system clients
  (update-as-create; documented in docs/architecture.md); others get 403.
* ``If-Match: W/"n"`` on update/patch/delete: 412 unless n is the current version.
* Conditional operations search through the disclosure gate, so a resource the
  requester may not see neither matches nor blocks (no existence probing).
* Update and delete of a resource the requester may not see answer exactly as for a
  resource that does not exist (update: 403 create-by-update for non-system clients;
  delete: 204), and change nothing.
* A ``patient/``-confined requester may only write into its own patient's record
  (SMART App Launch 2 scopes-and-launch-context, patient-specific scopes).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import jsonpatch
import orjson
from sqlalchemy import Connection

from consent.labels import apply_labels
from exchange.interactions.types import (
    FhirRequest,
    FhirResponse,
    check_text,
    outcome_response,
    resource_headers,
)
from exchange.outcome import FhirError, Forbidden, Invalid, Issue, NotFound, PreconditionFailed
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release_one
from exchange.repository import store
from exchange.repository.patients import patient_refs
from exchange.repository.stored import StoredResource
from exchange.services import Services
from exchange.validation import validate_resource

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(res_id: str) -> str:
    if not ID_RE.match(res_id):
        raise Invalid(f"Invalid resource id {res_id[:80]!r}: ids are 1-64 of [A-Za-z0-9-.]", code="value", expression="id")
    return res_id


def new_id() -> str:
    return str(uuid.uuid4())


def prepare(resource: Any, resource_type: str) -> dict[str, Any]:
    """Validate a resource about to be written and apply the security-label rules."""
    validate_resource(resource, resource_type, strict=True)
    return apply_labels(resource)


def _check_confined_write(ctx: RequestContext, rtype: str, res_id: str, resource: dict[str, Any]) -> None:
    """A patient-confined token writes only into its own patient's record (403)."""
    from exchange.auth.scopes import check_patient

    pids = [res_id] if rtype == "Patient" else []
    check_patient(ctx.requester, pids + patient_refs({**resource, "id": None}))


def _strip_volatile(data: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (data.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in data.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def unchanged(current: StoredResource | None, new: dict[str, Any]) -> bool:
    if current is None or current.deleted:
        return False
    return _strip_volatile(current.data) == _strip_volatile({**new, "id": current.id})


def _check_if_match(req: FhirRequest, current: Any) -> None:
    tag = req.header("if-match")
    if tag is None:
        return
    want = tag.strip().removeprefix("W/").strip('"')
    have = str(current.version_id) if current is not None and not current.deleted else None
    if have is None or want != have:
        raise PreconditionFailed(f"Version mismatch: If-Match {tag} but the current version is {have or 'none'}")


def _written_response(
    svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection, res: StoredResource, status: int
) -> FhirResponse:
    headers = resource_headers(res, svc.base_url)
    pref = (req.prefer("return") or "representation").lower()
    if pref == "minimal":
        return FhirResponse(status=status, headers=headers, resource=res)
    if pref == "operationoutcome":
        resp = outcome_response([Issue("informational", f"{res.resource_type}/{res.id} version {res.version_id} stored", "information")], status)
        resp.headers.update(headers)
        resp.resource = res
        return resp
    shown = release_one(conn, ctx, res)
    body = shown.content if shown is not None else None
    return FhirResponse(status=status, body=body, headers=headers, resource=res)


def create(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype = req.parts[0]
    resource = prepare(req.json(), rtype)
    cond = req.header("if-none-exist")
    if cond:
        matches = conditional_matches(conn, ctx, rtype, cond)
        if len(matches) > 1:
            raise PreconditionFailed(f"If-None-Exist matched {len(matches)} resources", code="multiple-matches")
        if matches:
            existing = store.read_many_current(conn, matches)[0]
            resp = _written_response(svc, ctx, req, conn, existing, 200)
            return resp
    res_id = new_id()
    resource.pop("id", None)
    _check_confined_write(ctx, rtype, res_id, resource)
    stored = store.write_version(conn, rtype, res_id, resource, method="POST", current=None)
    return _written_response(svc, ctx, req, conn, stored, 201)


def update(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype, res_id = req.parts[0], check_id(req.parts[1])
    resource = req.json()
    if isinstance(resource, dict):
        if "id" not in resource:
            raise Invalid("The resource must carry an id equal to the URL's id", code="required", expression=f"{rtype}.id")
        if resource.get("id") != res_id:
            raise Invalid(f"The body's id {resource.get('id')!r} does not match the URL's id {res_id!r}", expression=f"{rtype}.id")
    resource = prepare(resource, rtype)
    return _update_known_id(svc, ctx, req, conn, rtype, res_id, resource)


def _update_known_id(
    svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection, rtype: str, res_id: str, resource: dict[str, Any]
) -> FhirResponse:
    current_row = store.lock_current(conn, rtype, res_id)
    current = store.read_current(conn, rtype, res_id) if current_row is not None and not current_row.deleted else None
    if current is not None and release_one(conn, ctx, current) is None:
        current_row = None  # hidden: answer as if it did not exist, and write nothing
        if ctx.requester.kind in ("system", "anonymous"):
            raise NotFound(f"Resource {rtype}/{res_id} is not known")
    _check_if_match(req, current_row) if req.header("if-match") else None
    creating = current_row is None or current_row.deleted
    if current_row is None and ctx.requester.kind not in ("system", "anonymous"):
        raise Forbidden("Creating a resource by update (client-assigned id) is reserved to system clients", code="forbidden")
    _check_confined_write(ctx, rtype, res_id, resource)
    if current is not None and unchanged(current, resource):
        return _written_response(svc, ctx, req, conn, current, 200)
    stored = store.write_version(conn, rtype, res_id, resource, method="PUT", current=current_row)
    return _written_response(svc, ctx, req, conn, stored, 201 if creating else 200)


def conditional_update(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype = req.parts[0]
    resource = prepare(req.json(), rtype)
    matches = _find(conn, ctx, rtype, req.params)
    if len(matches) > 1:
        raise PreconditionFailed(f"The conditional update matched {len(matches)} resources", code="multiple-matches")
    if matches:
        existing = store.read_many_current(conn, matches)[0]
        if resource.get("id") not in (None, existing.id):
            raise Invalid("The body's id does not match the resource found by the condition", expression=f"{rtype}.id")
        return _update_known_id(svc, ctx, req, conn, rtype, existing.id, resource)
    if resource.get("id") and ctx.requester.kind not in ("system", "anonymous"):
        # as for update-as-create; and a 409 for a taken id would reveal a hidden resource
        raise Forbidden("Creating a resource by update (client-assigned id) is reserved to system clients", code="forbidden")
    res_id = check_id(resource["id"]) if resource.get("id") else new_id()
    if store.lock_current(conn, rtype, res_id) is not None:
        raise FhirError("conflict", f"{rtype}/{res_id} exists but does not match the condition", status=409)
    _check_confined_write(ctx, rtype, res_id, resource)
    stored = store.write_version(conn, rtype, res_id, resource, method="PUT", current=None)
    return _written_response(svc, ctx, req, conn, stored, 201)


def patch(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype, res_id = req.parts[0], check_id(req.parts[1])
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json-patch+json":
        raise FhirError("not-supported", "PATCH accepts application/json-patch+json (RFC 6902)", status=415)
    ops = req.json()
    if not isinstance(ops, list):
        raise Invalid("A JSON Patch document is an array of operations", code="structure")
    current_row = store.lock_current(conn, rtype, res_id)
    if current_row is None or current_row.deleted:
        raise NotFound(f"Resource {rtype}/{res_id} is not known")
    _check_if_match(req, current_row)
    current = store.read_current(conn, rtype, res_id)
    if release_one(conn, ctx, current) is None:
        raise NotFound(f"Resource {rtype}/{res_id} is not known")
    try:
        patched = jsonpatch.apply_patch(orjson.loads(current.content), ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError) as exc:
        raise FhirError("processing", f"The patch could not be applied: {exc}", status=422) from None
    if patched.get("id") != res_id or patched.get("resourceType") != rtype:
        raise FhirError("processing", "A patch may not change resourceType or id", status=422)
    patched = prepare(patched, rtype)
    _check_confined_write(ctx, rtype, res_id, patched)
    if unchanged(current, patched):
        return _written_response(svc, ctx, req, conn, current, 200)
    stored = store.write_version(conn, rtype, res_id, patched, method="PATCH", current=current_row)
    return _written_response(svc, ctx, req, conn, stored, 200)


def delete(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype, res_id = req.parts[0], check_id(req.parts[1])
    current_row = store.lock_current(conn, rtype, res_id)
    _check_if_match(req, current_row) if req.header("if-match") else None
    if current_row is not None and not current_row.deleted:
        current = store.read_current(conn, rtype, res_id)
        if release_one(conn, ctx, current) is None:
            return FhirResponse(status=204)  # hidden: the answer for a resource that does not exist
        stored = store.write_version(conn, rtype, res_id, None, method="DELETE", current=current_row)
        return FhirResponse(status=204, headers={"ETag": stored.etag}, resource=stored)
    return FhirResponse(status=204)


def conditional_delete(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    rtype = req.parts[0]
    matches = _find(conn, ctx, rtype, req.params)
    if len(matches) > 1:
        raise PreconditionFailed(f"The conditional delete matched {len(matches)} resources", code="multiple-matches")
    if not matches:
        return FhirResponse(status=204)
    existing = store.read_many_current(conn, matches)[0]
    sub = FhirRequest(method="DELETE", parts=[rtype, existing.id], headers=req.headers, base_url=req.base_url)
    return delete(svc, ctx, sub, conn)


def conditional_matches(conn: Connection, ctx: RequestContext, rtype: str, query: str) -> list[int]:
    from urllib.parse import parse_qsl

    query = query.split("?", 1)[1] if "?" in query else query
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise Invalid("The condition must have at least one search parameter", code="invalid")
    return _find(conn, ctx, rtype, params)


def _find(conn: Connection, ctx: RequestContext, rtype: str, params: list[tuple[str, str]]) -> list[int]:
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    for k, v in params:  # the If-None-Exist header and bundle conditions bypass FhirRequest
        check_text(k, "A condition parameter name")
        check_text(v, f"Condition parameter {k[:60]!r}", expression=k[:60])
    if not params:
        raise Invalid("A conditional operation needs search criteria", code="invalid")
    from exchange.search.service import find_rids

    return find_rids(conn, ctx, rtype, params)
