"""The exchange's own OperationDefinitions, served read-only (FHIR R4
operationdefinition.html; http.html#read).

The CapabilityStatement names every operation by the canonical URL of its definition
(``rest.resource.operation.definition``, capabilitystatement.html). The HL7-defined ones
(``Patient-everything``, ``Patient-match``) resolve at hl7.org; the exchange's own
(``$care-preferences``, ``$access-check``) are defined here, in JSON files next to their
code, and answered by :func:`read_definition` for
``GET [base]/OperationDefinition/{id}``: the id is the last segment of the canonical URL.
They are conformance resources (like ``/metadata``): no patient data, so no consent
decision applies; the response carries ``ETag`` from the definition's version.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from exchange.interactions.types import FhirRequest, FhirResponse
from exchange.outcome import NotFound
from exchange.pipeline.context import RequestContext
from exchange.services import Services

HERE = Path(__file__).resolve().parent
#: id -> file of each OperationDefinition the exchange itself defines
OWN_DEFINITIONS: dict[str, str] = {
    "Patient-care-preferences": "care_preferences_opdef.json",
    "Patient-access-check": "access_check_opdef.json",
}


@lru_cache(maxsize=8)
def _load(def_id: str) -> bytes:
    data = orjson.loads((HERE / OWN_DEFINITIONS[def_id]).read_bytes())
    return orjson.dumps(data)


def definition(def_id: str) -> dict[str, Any] | None:
    """The OperationDefinition with this id, or None when the exchange does not define it."""
    if def_id not in OWN_DEFINITIONS:
        return None
    return orjson.loads(_load(def_id))


def served_url(canonical: str) -> str | None:
    """The id under which ``canonical`` is served, when it is one of the exchange's own."""
    tail = canonical.rstrip("/").rsplit("/", 1)[-1]
    found = definition(tail)
    return tail if found is not None and found.get("url") == canonical else None


def read_definition(svc: Services, ctx: RequestContext, req: FhirRequest, conn: Connection | None) -> FhirResponse:
    """``GET [base]/OperationDefinition/{id}`` (a route handler: ``ctx.resource_id`` is the id)."""
    def_id = ctx.resource_id or ""
    if def_id not in OWN_DEFINITIONS:
        raise NotFound(f"OperationDefinition/{def_id[:64]} is not defined by this server")
    body = _load(def_id)
    version = orjson.loads(body).get("version", "1")
    return FhirResponse(status=200, body=body, headers={"ETag": f'W/"{version}"'})
