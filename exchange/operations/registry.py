"""The operations table (FHIR R4 operations.html): which operation runs where.

Only operations whose implementation is importable are routed and advertised in the
CapabilityStatement, so the statement never names an operation that cannot run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import FhirError, Invalid
from exchange.pipeline.context import RequestContext
from exchange.services import Services


@dataclass(frozen=True)
class OperationSpec:
    name: str  # without "$"
    resource_type: str | None
    instance: bool
    type_level: bool
    methods: tuple[str, ...]
    target: str  # "module:function"
    definition: str  # canonical URL of the OperationDefinition
    affects_state: bool = False


OPERATIONS: tuple[OperationSpec, ...] = (
    OperationSpec("everything", "Patient", True, True, ("GET", "POST"),
                  "exchange.operations.everything:everything",
                  "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
    OperationSpec("care-preferences", "Patient", True, False, ("GET",),
                  "exchange.operations.care_preferences:care_preferences",
                  "https://exchange.example.nhs.uk/fhir/OperationDefinition/Patient-care-preferences"),
    OperationSpec("match", "Patient", False, True, ("POST",),
                  "exchange.operations.match:match",
                  "http://hl7.org/fhir/OperationDefinition/Patient-match"),
    OperationSpec("access-check", "Patient", True, False, ("POST",),
                  "consent.explain:access_check",
                  "https://exchange.example.nhs.uk/fhir/OperationDefinition/Patient-access-check"),
)


@lru_cache(maxsize=32)
def _load(target: str) -> Callable[..., Any] | None:
    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return None


def available() -> list[OperationSpec]:
    return [op for op in OPERATIONS if _load(op.target) is not None]


def _parameters(req: FhirRequest) -> dict[str, Any]:
    if req.method.upper() != "POST" or not req.body:
        return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in req.params]}
    body = req.json()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Invalid("The operation takes a Parameters resource", code="structure")
    return body


def run_operation(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection) -> FhirResponse:
    name = (ctx.operation or "").lstrip("$")
    instance = ctx.resource_id is not None
    for op in available():
        if op.name != name or op.resource_type != ctx.resource_type:
            continue
        if (instance and not op.instance) or (not instance and not op.type_level):
            continue
        if req.method.upper() not in op.methods:
            raise FhirError("not-supported", f"${name} does not accept {req.method}", status=405)
        fn = _load(op.target)
        assert fn is not None
        base = svc.base_url
        settings = svc.settings
        if name == "everything":
            params = [(k, v) for k, v in req.params if k not in ("_format", "_pretty")]
            if req.method.upper() == "POST" and req.body:
                for p in _parameters(req).get("parameter", []):
                    val = next((v for k, v in p.items() if k.startswith("value")), None)
                    if val is not None:
                        params.append((p.get("name", ""), str(val)))
            body = fn(conn, ctx, settings, patient_id=ctx.resource_id, params=params, base_url=base)
        elif name == "care-preferences":
            body = fn(conn, ctx, settings, patient_id=ctx.resource_id, base_url=base)
        elif name == "match":
            body = fn(conn, ctx, settings, _parameters(req), base)
        elif name == "access-check":
            body = fn(conn, ctx, settings, ctx.resource_id, _parameters(req))
        else:  # pragma: no cover - the table above is closed
            raise FhirError("not-supported", f"${name} is not supported", status=404)
        if isinstance(body, dict):
            body = orjson.dumps(body)
        return FhirResponse(status=200, body=body)
    raise FhirError("not-supported", f"Operation ${name[:64]} is not supported here", status=404)
