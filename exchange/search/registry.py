"""The search parameters the exchange serves (FHIR R4 searchparameter.html, search.html).

Loaded from the official R4 SearchParameter definitions (``exchange/data/
search-parameters.json``) for the served resource types plus the common ``Resource``
parameters, and from the exchange's own built-in definitions (``exchange/data/
search-parameters-exchange.json``, canonical URLs under the exchange's base: parameters
R4 does not define but the exchange's requirements name, e.g. ``Flag?status``); each
FHIRPath expression is compiled once per resource type
(:mod:`exchange.search.fhirpath`). Custom SearchParameter resources are added with
:func:`register_search_parameter` (and :func:`load_custom` reads those stored in the
record); after adding one, :func:`exchange.search.indexer.reindex` fills its index.
:func:`supported_params` lists exactly what works, for the CapabilityStatement.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from exchange.search.fhirpath import FhirPathError, Fn, compile_for_type

SERVED_TYPES: tuple[str, ...] = tuple(
    ["Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "RelatedPerson", "Encounter", "EpisodeOfCare", "Condition", "AllergyIntolerance", "MedicationStatement", "MedicationRequest", "Medication", "Immunization", "Observation", "DiagnosticReport", "Specimen", "Procedure", "CarePlan", "CareTeam", "Goal", "ServiceRequest", "DocumentReference", "Composition", "Flag", "Consent", "QuestionnaireResponse", "Provenance", "AuditEvent", "Device", "Task", "Appointment", "List"]
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: SearchParameter Bundles indexed at write time and advertised like the official ones:
#: the R4 definitions, then the exchange's own (a custom parameter shipped with the
#: product; after adding one, existing databases need ``exchange search reindex --type T``)
BUILTIN_FILES: tuple[str, ...] = ("search-parameters.json", "search-parameters-exchange.json")
INDEXED_TYPES = frozenset({"token", "string", "date", "reference", "quantity", "number", "uri"})
#: common parameters answered from resource_current rather than index rows
SPECIAL_COMMON = {"_id"}
UNSUPPORTED_COMMON = {"_text", "_content", "_query", "_filter", "_list", "_has"}
#: parameters whose semantics the index cannot honour (no phonetic algorithm), so they are
#: neither answered nor advertised rather than answered wrongly
UNSUPPORTED_CODES = {"phonetic"}


@dataclass
class Component:
    type: str
    fn: Fn


@dataclass
class SearchParam:
    code: str
    type: str
    url: str
    description: str
    bases: tuple[str, ...]
    expression: str
    targets: tuple[str, ...] = ()
    component_defs: tuple[tuple[str, str], ...] = ()  # (definition url, expression)
    fns: dict[str, Fn | None] = field(default_factory=dict)
    components: dict[str, list[Component]] = field(default_factory=dict)

    def fn_for(self, resource_type: str) -> Fn | None:
        if resource_type not in self.fns:
            try:
                self.fns[resource_type] = (
                    compile_for_type(self.expression, resource_type) if self.expression else None
                )
            except FhirPathError:
                self.fns[resource_type] = None
        return self.fns[resource_type]


class Registry:
    """Search parameters by resource type and code (thread-safe registration)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_url: dict[str, SearchParam] = {}
        self.by_type: dict[str, dict[str, SearchParam]] = {}
        self.common: dict[str, SearchParam] = {}
        self.generation = 0

    def add(self, res: dict[str, Any]) -> SearchParam | None:
        ptype = res.get("type")
        code = res.get("code")
        if not code or ptype not in INDEXED_TYPES | {"composite"}:
            return None
        if ptype != "composite" and not res.get("expression"):
            return None
        sp = SearchParam(
            code=code,
            type=ptype,
            url=res.get("url") or f"urn:search-param:{code}",
            description=res.get("description", ""),
            bases=tuple(res.get("base") or ()),
            expression=res.get("expression") or "",
            targets=tuple(res.get("target") or ()),
            component_defs=tuple(
                (c.get("definition", ""), c.get("expression", "")) for c in res.get("component") or ()
            ),
        )
        with self._lock:
            self.generation += 1
            self.by_url[sp.url] = sp
            for base in sp.bases:
                if base in ("Resource", "DomainResource"):
                    self.common[code] = sp
                else:
                    self.by_type.setdefault(base, {})[code] = sp
        return sp

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        sp = self.by_type.get(resource_type, {}).get(code) or self.common.get(code)
        if sp is None or not self.works(sp, resource_type):
            return None
        return sp

    def works(self, sp: SearchParam, resource_type: str) -> bool:
        if sp.type == "composite":
            return bool(self.components_for(sp, resource_type))
        return sp.fn_for(resource_type) is not None

    def components_for(self, sp: SearchParam, resource_type: str) -> list[Component]:
        if resource_type not in sp.components:
            comps: list[Component] = []
            for url, expr in sp.component_defs:
                target = self.by_url.get(url)
                if target is None or target.type not in INDEXED_TYPES:
                    comps = []
                    break
                try:
                    fn = compile_for_type(expr, resource_type)
                except FhirPathError:
                    fn = None
                if fn is None:
                    comps = []
                    break
                comps.append(Component(target.type, fn))
            sp.components[resource_type] = comps
        return sp.components[resource_type]

    def params_for(self, resource_type: str) -> list[SearchParam]:
        seen: dict[str, SearchParam] = {}
        for code, sp in {**self.common, **self.by_type.get(resource_type, {})}.items():
            if code not in SPECIAL_COMMON and self.works(sp, resource_type):
                seen[code] = sp
        return list(seen.values())


_R4 = "http://hl7.org/fhir/SearchParameter/"

#: Corrections to published R4 definitions, applied when the built-in files are loaded
#: (the data file stays the verbatim R4 download). Definition url -> replacement
#: ``component`` list.
#:
#: DocumentReference-relationship: the R4 definition pairs its components crosswise -
#: ``relatesto`` (a reference parameter) with the expression ``code`` and ``relation``
#: (a token parameter) with ``target`` - although DocumentReference.relatesTo.code is a
#: code and .target a Reference(DocumentReference), so no value could ever match. The
#: R4B (4.3.0) and R5 definitions of the same parameter pair ``relatesto`` with
#: ``target`` and ``relation`` with ``code``, keeping the value order
#: ``relatesto$relation`` (e.g. ``DocumentReference/123$replaces``); we serve that.
DEFINITION_CORRECTIONS: dict[str, list[dict[str, str]]] = {
    _R4 + "DocumentReference-relationship": [
        {"definition": _R4 + "DocumentReference-relatesto", "expression": "target"},
        {"definition": _R4 + "DocumentReference-relation", "expression": "code"},
    ],
}


def _corrected(res: dict[str, Any]) -> dict[str, Any]:
    """``res`` with its ``DEFINITION_CORRECTIONS`` entry applied (a copy), or ``res``."""
    components = DEFINITION_CORRECTIONS.get(res.get("url") or "")
    if components is None:
        return res
    return {**res, "component": [dict(c) for c in components]}


def _load_default() -> Registry:
    reg = Registry()
    for name in BUILTIN_FILES:
        text = (DATA_DIR / name).read_text("utf-8")
        for entry in json.loads(text).get("entry", []):
            res = entry.get("resource") or {}
            if res.get("code") in UNSUPPORTED_COMMON | UNSUPPORTED_CODES:
                continue
            reg.add(_corrected(res))
    return reg


REGISTRY = _load_default()


def register_search_parameter(resource: dict[str, Any]) -> SearchParam:
    """Add a custom SearchParameter (an R4 SearchParameter resource as a dict).

    Raises ValueError when its type or expression is outside what the index supports."""
    if resource.get("resourceType", "SearchParameter") != "SearchParameter":
        raise ValueError("not a SearchParameter")
    sp = REGISTRY.add(resource)
    if sp is None:
        raise ValueError(f"unsupported search parameter type {resource.get('type')!r}")
    if not any(REGISTRY.works(sp, b) for b in sp.bases if b not in ("Resource", "DomainResource")) and not (
        set(sp.bases) & {"Resource", "DomainResource"}
    ):
        raise ValueError(f"expression not supported: {sp.expression!r}")
    return sp


def load_custom(conn: Any) -> int:
    """Register every active SearchParameter resource stored in the record."""
    from sqlalchemy import select

    from exchange.db.tables import resource_current as rc
    from exchange.db.tables import resource_version as rv

    q = (
        select(rv.c.content)
        .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
        .where(rc.c.res_type == "SearchParameter", rc.c.deleted.is_(False))
    )
    n = 0
    for (content,) in conn.execute(q):
        res = json.loads(bytes(content))
        if res.get("status", "active") in ("active", "draft"):
            try:
                register_search_parameter(res)
                n += 1
            except ValueError:
                continue
    return n


@lru_cache(maxsize=1)
def _builtin() -> Registry:
    return _load_default()


def builtin_param_names(resource_type: str) -> list[str]:
    """The built-in parameters (official R4 and the exchange's own, ``BUILTIN_FILES``)
    that work for ``resource_type``, without any custom SearchParameter registered at
    run time (the OpenAPI document describes the product)."""
    return ["_id", *sorted(sp.code for sp in _builtin().params_for(resource_type))]


def get_param(resource_type: str, code: str) -> SearchParam | None:
    return REGISTRY.get(resource_type, code)


def params_for(resource_type: str) -> list[SearchParam]:
    return REGISTRY.params_for(resource_type)


def supported_params(resource_type: str) -> list[dict[str, str]]:
    """Search parameters that work for ``resource_type`` (CapabilityStatement.rest.resource.searchParam)."""
    out = [{
        "name": "_id", "type": "token",
        "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        "documentation": "Logical id of this artifact",
    }]
    for sp in sorted(params_for(resource_type), key=lambda s: s.code):
        out.append({"name": sp.code, "type": sp.type, "definition": sp.url, "documentation": sp.description})
    return out


def _load_compartment() -> dict[str, tuple[str, ...]]:
    text = (DATA_DIR / "compartment-patient.json").read_text("utf-8")
    data = json.loads(text)
    return {r["code"]: tuple(r["param"]) for r in data.get("resource", []) if r.get("param")}


#: Patient CompartmentDefinition: resource type -> the reference parameters that place a
#: resource in a patient's compartment (FHIR R4 compartmentdefinition-patient.html).
PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = _load_compartment()


def include_values(resource_type: str) -> list[str]:
    """``_include`` values for the CapabilityStatement (searchInclude)."""
    refs = sorted(sp.code for sp in params_for(resource_type) if sp.type == "reference")
    return ["*", *(f"{resource_type}:{code}" for code in refs)]


def revinclude_values(resource_type: str) -> list[str]:
    """``_revinclude`` values: reference parameters of served types that may point here."""
    out: list[str] = []
    for src in SERVED_TYPES:
        for sp in sorted(params_for(src), key=lambda s: s.code):
            if sp.type == "reference" and (not sp.targets or resource_type in sp.targets):
                out.append(f"{src}:{sp.code}")
    return out
