"""Which resources are end-of-life / resuscitation care preferences (issue 6).

These are *always shared for direct care* (docs/consent-policy.md): the consent gate
releases them to any requester with a direct-care purpose (TREAT, ETREAT, BTG) who may
see the patient at all, even where objections hide the rest of the record, unless a
Consent provision explicitly restricts them.

A resource is a care preference when it is one of the listed resource types and
(a) carries one of the listed codes anywhere (SNOMED CT, e.g. 450476008 Not for
cardiopulmonary resuscitation), or (b) is a Consent with scope ``adr`` (FHIR R4
consent.html: advance directive) or category ``dnr``, or (c) is a RelatedPerson whose
relationship is an attorney role (v3-RoleCode HPOWATT/POWATT/DPOWATT), or (d) carries a
care-preference tag. The code list is ``consent/data/care_preferences.yaml`` merged with
the SNOMED CT codes in ``exchange/operations/eol_codes.yaml`` (when present).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from consent.labels import iter_codings

DATA_PATH = Path(__file__).parent / "data" / "care_preferences.yaml"
EOL_CODES_PATH = Path(__file__).resolve().parents[1] / "exchange" / "operations" / "eol_codes.yaml"
SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class CarePreferenceCodes:
    resource_types: frozenset[str]
    codes: frozenset[tuple[str, str]]
    consent_scopes: frozenset[tuple[str, str]]
    consent_categories: frozenset[tuple[str, str]]
    attorney_relationships: frozenset[tuple[str, str]]
    tags: frozenset[tuple[str, str]]
    tag_systems: frozenset[str] = frozenset()


def _pairs(items: Any) -> set[tuple[str, str]]:
    return {(str(c["system"]), str(c["code"])) for c in items or [] if isinstance(c, dict)
            and c.get("system") and c.get("code")}


def _eol_snomed_codes(doc: Any) -> set[tuple[str, str]]:
    """Every SNOMED CT code listed anywhere in the EoL engineer's code file."""
    out: set[tuple[str, str]] = set()
    stack = [doc]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            code = cur.get("code")
            system = cur.get("system", SNOMED)
            if isinstance(code, str | int) and system == SNOMED and str(code).isdigit():
                out.add((SNOMED, str(code)))
            stack.extend(v for v in cur.values() if isinstance(v, dict | list))
        elif isinstance(cur, list):
            stack.extend(cur)
    return out


@lru_cache(maxsize=2)
def load_codes(path: str | None = None, eol_path: str | None = None) -> CarePreferenceCodes:
    doc = yaml.safe_load(Path(path or DATA_PATH).read_text(encoding="utf-8"))
    codes = _pairs(doc.get("codes"))
    eol = Path(eol_path) if eol_path else EOL_CODES_PATH
    if eol.exists():
        # the EoL engine validates its own file; a broken one leaves our list in force
        with contextlib.suppress(yaml.YAMLError):
            codes |= _eol_snomed_codes(yaml.safe_load(eol.read_text(encoding="utf-8")))
    return CarePreferenceCodes(
        resource_types=frozenset(doc.get("resource_types") or []),
        codes=frozenset(codes),
        consent_scopes=frozenset(_pairs(doc.get("consent_scopes"))),
        consent_categories=frozenset(_pairs(doc.get("consent_categories"))),
        attorney_relationships=frozenset(_pairs(doc.get("attorney_relationships"))),
        tags=frozenset(_pairs(doc.get("tags"))),
        tag_systems=frozenset(str(x) for x in doc.get("tag_systems") or []),
    )


def _codings_of(concepts: Any) -> set[tuple[str, str]]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    out = set()
    for cc in concepts or []:
        for c in (cc or {}).get("coding") or []:
            if isinstance(c, dict) and c.get("system") and c.get("code"):
                out.add((c["system"], c["code"]))
    return out


def is_care_preference(resource: dict[str, Any], codes: CarePreferenceCodes | None = None) -> bool:
    """True if the resource records an end-of-life or resuscitation preference."""
    cp = codes or load_codes()
    rtype = resource.get("resourceType")
    if rtype not in cp.resource_types:
        return False
    tags = {(t.get("system"), t.get("code")) for t in (resource.get("meta") or {}).get("tag") or []
            if isinstance(t, dict)}
    if tags & cp.tags or any(system in cp.tag_systems for system, _c in tags):
        return True
    if rtype == "Consent":
        if any(c[1] == "patient-privacy" for c in _codings_of(resource.get("scope"))):
            return False
        if _codings_of(resource.get("scope")) & cp.consent_scopes:
            return True
        if _codings_of(resource.get("category")) & cp.consent_categories:
            return True
    if rtype == "RelatedPerson" and _codings_of(resource.get("relationship")) & cp.attorney_relationships:
        return True
    if any(c in cp.codes for c in iter_codings(resource)):
        return True
    return _eol_classifier_says_so(resource)


def _eol_classifier_says_so(resource: dict[str, Any]) -> bool:
    """Ask the end-of-life engine's classifier too (one definition for both, issue 6).

    Absent or failing, it answers False: the resource is then treated as ordinary
    record content, which can only hide more, never show more.
    """
    try:
        from exchange.operations.eol_classify import is_care_preference as eol_is_preference
    except ImportError:
        return False
    try:
        return bool(eol_is_preference(resource))
    except Exception:  # noqa: BLE001 - a classifier fault must not break disclosure
        return False
