"""Searchset Bundles spliced from stored bytes (FHIR R4 bundle.html, search.html#summary).

Resources are copied into the Bundle as the exact stored JSON bytes (no model
round-trip); only ``_summary`` and ``_elements`` (search.html#summary, #elements)
rewrite a resource, marking it with the ``SUBSETTED`` security tag.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import orjson

from exchange.outcome import Issue, operation_outcome
from exchange.repository.stored import StoredResource

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@lru_cache(maxsize=128)
def _element_info(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary element keys, mandatory element keys) from the R4B model definitions.

    R4 search.html#summary and #elements: mandatory elements (min 1) are always kept.
    The R4B models mark them three ways: ``element_required`` on primitive elements
    (Observation.status), a pydantic required field for complex elements
    (Observation.code, 1..1 CodeableConcept), and ``one_of_many_required`` on each
    typed variant of a mandatory choice element (MedicationRequest.medication[x]:
    whichever variant the resource carries is kept).
    """
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(resource_type)
    except (ImportError, KeyError, ValueError):
        return frozenset(), frozenset()
    summary: set[str] = set()
    required: set[str] = set()
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        key = f.alias or name
        if extra.get("summary_element_property"):
            summary.add(key)
        if f.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            required.add(key)
    return frozenset(summary), frozenset(required)


def _subsetted(data: dict[str, Any], keep: set[str] | frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k in keep or k in _ALWAYS}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag") or () if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return out


def shape(res: StoredResource, summary: str | None, elements: list[str]) -> bytes:
    """The bytes to send for ``res`` under ``_summary`` / ``_elements``."""
    content = res.content or b"{}"
    if not summary and not elements:
        return content
    data = res.data
    summary_keys, required = _element_info(res.resource_type)
    if summary == "true":
        return orjson.dumps(_subsetted(data, summary_keys | required))
    if summary == "text":
        return orjson.dumps(_subsetted(data, required | {"text"}))
    if summary == "data":
        return orjson.dumps(_subsetted(data, set(data) - {"text"}))
    keep = {e.split(".", 1)[0] for e in elements} | required
    keep |= {k for k in data if any(k.startswith(e) and k[len(e):][:1].isupper() for e in elements)}
    return orjson.dumps(_subsetted(data, keep))


def entry_bytes(base_url: str, res: StoredResource, mode: str, body: bytes) -> bytes:
    full = orjson.dumps(f"{base_url.rstrip('/')}/{res.resource_type}/{res.id}")
    return b'{"fullUrl":' + full + b',"resource":' + body + b',"search":{"mode":"' + mode.encode() + b'"}}'


def outcome_entry(issues: list[Issue]) -> bytes:
    oo = operation_outcome(issues)
    oo["id"] = str(uuid.uuid4())
    return b'{"resource":' + orjson.dumps(oo) + b',"search":{"mode":"outcome"}}'


def self_url(base_url: str, resource_type: str | None, used: list[tuple[str, str]], extra: dict[str, str]) -> str:
    path = base_url.rstrip("/") + (f"/{resource_type}" if resource_type else "")
    query = urlencode([*used, *extra.items()])
    return f"{path}?{query}" if query else path


def searchset(*, total: int | None, links: list[tuple[str, str]], entries: list[bytes]) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now},
        "type": "searchset",
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    out = orjson.dumps(head)[:-1]
    if entries:
        out += b',"entry":[' + b",".join(entries) + b"]"
    return out + b"}"
