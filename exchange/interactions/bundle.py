"""batch and transaction (FHIR R4 http.html#transaction, bundle.html#transaction).

* **transaction**: all or nothing, in one database transaction. Entries are processed
  in the order the spec prescribes (DELETE, POST, PUT/PATCH, GET/HEAD); ``urn:uuid:``
  fullUrls of created resources are given server ids first and every reference to them
  is rewritten; conditional references (``Patient?identifier=...``) are resolved by
  search and must match exactly one resource. Any failing entry rolls back everything
  and the response is that entry's OperationOutcome.
* **batch**: each entry in its own database transaction; each entry's own outcome is
  reported in the batch-response.

Each entry re-enters :func:`exchange.interactions.router.handle` with a child context,
so authorisation and the disclosure choke point apply per entry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from sqlalchemy import Connection

from exchange.db.engine import write_tx
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.interactions.write import new_id
from exchange.outcome import FhirError, Invalid
from exchange.pipeline.context import RequestContext
from exchange.repository.store import fhir_instant
from exchange.services import Services

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


def bundle_handler(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection | None) -> FhirResponse:
    bundle = req.json()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise Invalid("POST to the server base takes a Bundle of type batch or transaction", code="structure")
    btype = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise Invalid("Bundle.entry must be an array", code="structure", expression="Bundle.entry")
    if len(entries) > svc.settings.max_bundle_entries:
        raise FhirError(
            "too-long",
            f"The Bundle has {len(entries)} entries; this server accepts at most {svc.settings.max_bundle_entries}",
            status=413,
            expression="Bundle.entry",
        )
    if btype == "transaction":
        ctx.interaction = "transaction"
        if conn is not None:
            body = process_transaction(svc, ctx, entries, conn, base_url=req.base_url)
        else:
            from exchange.interactions.router import audit_committed, audit_within

            with write_tx(svc.engine) as c:
                body = process_transaction(svc, ctx, entries, c, base_url=req.base_url)
                resp = FhirResponse(status=200, body=orjson.dumps(body))
                appended = audit_within(svc, ctx, c, resp)
            audit_committed(svc, ctx, appended)
            return resp
        return FhirResponse(status=200, body=orjson.dumps(body))
    if btype == "batch":
        ctx.interaction = "batch"
        return FhirResponse(status=200, body=orjson.dumps(process_batch(svc, ctx, entries, conn, base_url=req.base_url)))
    raise Invalid(f"Bundle.type must be batch or transaction, not {btype!r}", code="value", expression="Bundle.type")


def process_bundle(svc: Services, ctx: RequestContext, bundle: dict[str, Any], conn: Connection | None = None) -> dict[str, Any]:
    """Python entry point (CLI ``exchange load``, adapters): returns the response Bundle."""
    req = FhirRequest(method="POST", parts=[], body=orjson.dumps(bundle), base_url=svc.base_url)
    from exchange.interactions.router import handle

    resp = handle(svc, ctx, req, conn)
    return orjson.loads(resp.body or b"{}")


def _entry_request(entry: Any, index: int) -> tuple[str, str, list[tuple[str, str]], dict[str, str]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise Invalid(f"Bundle.entry[{index}].request is required", code="required", expression=f"Bundle.entry[{index}].request")
    r = entry["request"]
    method = str(r.get("method", "")).upper()
    if method not in ORDER:
        raise Invalid(f"Unsupported method {method!r}", code="value", expression=f"Bundle.entry[{index}].request.method")
    url = r.get("url")
    if not isinstance(url, str) or not url:
        raise Invalid("request.url is required", code="required", expression=f"Bundle.entry[{index}].request.url")
    split = urlsplit(url)
    path = split.path.strip("/")
    headers: dict[str, str] = {}
    for src, dst in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"), ("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
        if r.get(src):
            headers[dst] = str(r[src])
    return method, path, parse_qsl(split.query, keep_blank_values=True), headers


def _sub_request(method: str, path: str, params, headers, resource, base_url: str) -> FhirRequest:
    parts = [p for p in path.split("/") if p]
    body = orjson.dumps(resource) if resource is not None else None
    if method == "PATCH" and isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        import base64

        body = base64.b64decode(resource.get("data", ""))
        headers = {**headers, "content-type": "application/json-patch+json"}
    req = FhirRequest(method=method, parts=parts, params=params, headers={"prefer": "return=representation", **headers}, body=body, base_url=base_url)
    if resource is not None and method != "PATCH":
        req._json = resource
    return req


def _entry_response(resp: FhirResponse, include_resource: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"response": {"status": STATUS_TEXT.get(resp.status, str(resp.status))}}
    res = resp.resource
    if res is not None:
        if resp.status in (200, 201):
            out["response"]["location"] = f"{res.resource_type}/{res.id}/_history/{res.version_id}"
        out["response"]["etag"] = res.etag
        out["response"]["lastModified"] = fhir_instant(res.last_updated)
        out["fullUrl"] = f"{{base}}/{res.resource_type}/{res.id}"
    if include_resource and resp.body:
        out["resource"] = orjson.loads(resp.body)
    if resp.outcome is not None:
        out["response"]["outcome"] = resp.outcome
    return out


def _merge_child(parent: RequestContext, child: RequestContext) -> None:
    from exchange.pipeline.concerned import patients_named_by

    parent.released.extend(child.released)
    parent.patients |= child.patients | patients_named_by(child)  # e.g. GET Observation?patient=X
    parent.withheld += child.withheld
    parent.withheld_rules.update(child.withheld_rules)
    for note in child.informational:
        if note not in parent.informational:
            parent.informational.append(note)


def process_batch(svc: Services, ctx: RequestContext, entries: list[Any], conn: Connection | None, *, base_url: str) -> dict[str, Any]:
    from exchange.interactions.router import handle

    out = []
    for i, entry in enumerate(entries):
        try:
            method, path, params, headers = _entry_request(entry, i)
            sub = _sub_request(method, path, params, headers, entry.get("resource"), base_url)
            child = ctx.child(method=method, path=path, query=urlencode(params))
            try:
                resp = handle(svc, child, sub, conn)
            finally:
                _merge_child(ctx, child)
            e = _entry_response(resp, include_resource=method == "GET" or resp.status in (200, 201))
        except FhirError as exc:
            e = {"response": {"status": str(exc.status), "outcome": exc.outcome()}}
        if "fullUrl" in e:
            e["fullUrl"] = e["fullUrl"].replace("{base}", base_url)
        out.append(e)
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def _walk_refs(node: Any, fn) -> Any:  # noqa: ANN001
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                node[k] = fn(v)
            else:
                _walk_refs(v, fn)
    elif isinstance(node, list):
        for item in node:
            _walk_refs(item, fn)
    return node


def process_transaction(svc: Services, ctx: RequestContext, entries: list[Any], conn: Connection, *, base_url: str) -> dict[str, Any]:
    from exchange.interactions.router import handle
    from exchange.interactions.write import conditional_matches

    parsed = []
    seen_targets: set[str] = set()
    for i, entry in enumerate(entries):
        method, path, params, headers = _entry_request(entry, i)
        resource = entry.get("resource")
        if resource is not None:
            resource = orjson.loads(orjson.dumps(resource))  # private copy we may rewrite
        if method in ("PUT", "PATCH", "DELETE") and not params:
            target = path
            if target in seen_targets:
                raise Invalid(f"Bundle.entry[{i}]: {target} appears more than once in the transaction", expression=f"Bundle.entry[{i}]")
            seen_targets.add(target)
        parsed.append([i, method, path, params, headers, resource, entry.get("fullUrl")])

    results: dict[int, dict[str, Any]] = {}

    def run(item: list[Any]) -> None:
        i, method, path, params, headers, resource = item[:6]
        if method == "POST" and len(item) == 7 and headers.get("if-none-exist"):
            # conditional create that matched: report the existing resource
            rtype = path.split("/")[0]
            sub = _sub_request(method, rtype, params, headers, resource, base_url)
        elif method == "POST" and len(item) == 8:
            rtype = path.split("/")[0]
            resource = {**resource, "id": item[7]}
            sub = _sub_request("PUT", f"{rtype}/{item[7]}", [], {}, resource, base_url)
            sub.method = "POST-AS-PUT"
        else:
            sub = _sub_request(method, path, params, headers, resource, base_url)
        child = ctx.child(method=method, path=path, query=urlencode(params))
        try:
            if sub.method == "POST-AS-PUT":
                resp = _create_with_id(svc, child, sub, conn)
            else:
                resp = handle(svc, child, sub, conn)
        except FhirError as exc:
            for issue in exc.issues:
                issue.diagnostics = f"Bundle.entry[{i}] ({method} {path}): {issue.diagnostics}"
                if not issue.expression:
                    issue.expression = [f"Bundle.entry[{i}]"]
            raise
        finally:
            _merge_child(ctx, child)
        e = _entry_response(resp, include_resource=method == "GET")
        if "fullUrl" in e:
            e["fullUrl"] = e["fullUrl"].replace("{base}", base_url)
        results[i] = e

    # 1. DELETEs first (R4 http.html#trules step 1), before any If-None-Exist or
    # conditional reference is resolved below: those must see the state after the
    # deletes, or a reference to a conditional create's fullUrl would point at the
    # resource the same transaction deletes while the create makes a new one
    for item in parsed:
        if item[1] == "DELETE":
            run(item)

    # 2. give every created resource its id, so references can be rewritten first
    id_map: dict[str, str] = {}
    for item in parsed:
        i, method, path, params, headers, resource, full_url = item
        if method == "POST" and isinstance(resource, dict):
            rtype = path.split("/")[0]
            if headers.get("if-none-exist"):
                matches = conditional_matches(conn, ctx, rtype, headers["if-none-exist"])
                if len(matches) > 1:
                    raise FhirError("multiple-matches", f"Bundle.entry[{i}]: If-None-Exist matched {len(matches)} resources", status=412)
                if len(matches) == 1:
                    from exchange.repository.store import read_many_current

                    existing = read_many_current(conn, matches)[0]
                    if full_url:
                        id_map[full_url] = f"{rtype}/{existing.id}"
                    continue
            new = new_id()
            item.append(new)
            if full_url:
                id_map[full_url] = f"{rtype}/{new}"
        elif method == "PUT" and full_url and isinstance(resource, dict) and not params:
            id_map[full_url] = path

    cond_cache: dict[str, str] = {}

    def rewrite(ref: str) -> str:
        if ref in id_map:
            return id_map[ref]
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise Invalid(f"Reference {ref} does not resolve to an entry of the transaction", code="invalid")
        if "?" in ref and "/" not in ref.split("?")[0]:
            if ref not in cond_cache:
                rtype = ref.split("?")[0]
                matches = conditional_matches(conn, ctx, rtype, ref)
                if len(matches) != 1:
                    raise FhirError("not-found" if not matches else "multiple-matches", f"Conditional reference {ref} matched {len(matches)} resources", status=412 if matches else 404)
                from exchange.repository.store import read_many_current

                cond_cache[ref] = f"{rtype}/{read_many_current(conn, matches)[0].id}"
            return cond_cache[ref]
        return ref

    for item in parsed:
        if isinstance(item[5], dict):
            try:
                _walk_refs(item[5], rewrite)
            except FhirError as exc:
                exc.issues[0].expression = [f"Bundle.entry[{item[0]}].resource"]
                raise

    # 3. then POST, PUT/PATCH, GET/HEAD, each group in Bundle order
    for item in sorted(parsed, key=lambda it: (ORDER[it[1]], it[0])):
        if item[1] != "DELETE":
            run(item)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [results[i] for i in range(len(parsed))]}


def _create_with_id(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    """A transaction POST whose id was assigned up front (so references could point at it)."""
    from exchange.interactions.router import authorize
    from exchange.interactions.write import _written_response, prepare
    from exchange.repository.store import write_version

    rtype, res_id = req.parts[0], req.parts[1]
    ctx.interaction, ctx.resource_type = "create", rtype
    authorize(svc, ctx)
    resource = prepare(req.json(), rtype)
    stored = write_version(conn, rtype, res_id, resource, method="POST", current=None)
    return _written_response(svc, ctx, req, conn, stored, 201)
