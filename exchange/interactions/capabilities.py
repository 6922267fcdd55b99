"""The CapabilityStatement (FHIR R4 capabilitystatement.html), generated from what is
actually implemented: served types, the interactions the route table handles, the
search parameters the search engine supports and the operations that are importable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from exchange import __version__
from exchange.auth.routes import smart_security_extension
from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.operations.registry import available
from exchange.pipeline.context import RequestContext
from exchange.search.registry import include_values, revinclude_values, supported_params
from exchange.services import Services
from exchange.validation import SERVED_TYPES

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")


def _search_params(rtype: str) -> list[dict[str, Any]]:
    out = []
    for p in supported_params(rtype):
        entry = {"name": p["name"], "type": p["type"]}
        if p.get("definition"):
            entry["definition"] = p["definition"]
        if p.get("documentation"):
            entry["documentation"] = p["documentation"]
        out.append(entry)
    return out


def _security(svc: Services) -> dict[str, Any] | None:
    if not svc.settings.auth_enabled:
        return None
    return smart_security_extension(svc.settings)


@lru_cache(maxsize=4)
def _statement_bytes(base_url: str, auth: bool, security_json: bytes) -> bytes:
    ops = available()
    resources = []
    for rtype in SERVED_TYPES:
        entry: dict[str, Any] = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchParam": _search_params(rtype),
        }
        if rtype == "AuditEvent":
            entry["interaction"] = [{"code": c} for c in ("read", "search-type")]
            for k in ("updateCreate", "conditionalCreate", "conditionalUpdate", "conditionalDelete", "versioning", "readHistory"):
                entry.pop(k)
        entry["searchInclude"] = include_values(rtype)
        entry["searchRevInclude"] = revinclude_values(rtype)
        typed_ops = [o for o in ops if o.resource_type == rtype]
        if typed_ops:
            entry["operation"] = [{"name": o.name, "definition": o.definition} for o in typed_ops]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "Integrated care record exchange: FHIR R4 facade over the shared care record",
        "resource": resources,
        "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
        "searchParam": [{"name": "_type", "type": "token"}],
    }
    security = orjson.loads(security_json) if security_json else None
    if security:
        rest["security"] = security
    statement = {
        "resourceType": "CapabilityStatement",
        "id": "exchange",
        "url": f"{base_url}/metadata",
        "name": "IntegratedCareRecordExchange",
        "title": "Integrated care record exchange",
        "status": "active",
        "experimental": False,
        "date": "2026-11-30",
        "publisher": "Integrated care record exchange",
        "kind": "instance",
        "software": {"name": "care-record-exchange", "version": __version__},
        "implementation": {"description": "Shared care record FHIR facade", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
    return orjson.dumps(statement)


def capabilities(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    security = _security(svc)
    body = _statement_bytes(svc.base_url, svc.settings.auth_enabled, orjson.dumps(security) if security else b"")
    return FhirResponse(status=200, body=body)
