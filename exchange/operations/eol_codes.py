"""The care-preference code book, loaded from ``eol_codes.yaml`` (issue 6; docs/care-preferences.md).

One place answers "what kind of care preference is this coding?" for the
``$care-preferences`` operation, the CDS Hooks service and the consent layer. Codes are
SNOMED CT (http://snomed.info/sct) where a verified concept exists and otherwise the
exchange's local ``care-preference-kind`` CodeSystem (FHIR R4 terminologies.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CODES_FILE = Path(__file__).with_name("eol_codes.yaml")

#: Composition section order and titles (the document's reading order).
KIND_ORDER = (
    "cpr",
    "respect",
    "adrt",
    "lpa",
    "place_of_care",
    "place_of_death",
    "mental_capacity",
    "eol_register",
)


@dataclass(frozen=True)
class CodeEntry:
    kind: str
    system: str
    code: str
    display: str
    cpr: str | None = None  # "not-for-cpr" | "for-cpr" for CPR codes


@dataclass(frozen=True)
class CodeBook:
    """Lookups over the canonical code list."""

    systems: dict[str, str]
    titles: dict[str, str]
    by_coding: dict[tuple[str, str], CodeEntry]
    source_tag_systems: tuple[str, ...]
    consent_rules: dict[tuple[str, str], tuple[str, str | None]]  # (scope, category) -> (kind, cpr)
    questionnaire_markers: tuple[str, ...]
    attorney_roles: frozenset[str]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def snomed(self) -> str:
        return self.systems["snomed"]

    @property
    def kind_system(self) -> str:
        return self.systems["kind"]

    def lookup(self, coding: dict[str, Any]) -> CodeEntry | None:
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        return self.by_coding.get((system, code))

    def lookup_concept(self, concept: Any) -> CodeEntry | None:
        """The first coding of a CodeableConcept that the code book knows."""
        if not isinstance(concept, dict):
            return None
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict):
                hit = self.lookup(coding)
                if hit:
                    return hit
        return None

    def codes_for(self, kind: str) -> list[CodeEntry]:
        return [e for e in self.by_coding.values() if e.kind == kind]

    def all_snomed_codes(self) -> frozenset[str]:
        """Every SNOMED CT code that marks a care preference (for the consent layer)."""
        return frozenset(c for (s, c) in self.by_coding if s == self.snomed)


def local_code(kind: str) -> str:
    """The local ``care-preference-kind`` code of a kind (``place_of_death`` -> ``place-of-death``)."""
    return kind.replace("_", "-")


def parse_codebook(data: dict[str, Any]) -> CodeBook:
    systems: dict[str, str] = dict(data["systems"])
    titles: dict[str, str] = {}
    by_coding: dict[tuple[str, str], CodeEntry] = {}
    consent_rules: dict[tuple[str, str], tuple[str, str | None]] = {}
    markers: tuple[str, ...] = ()
    roles: frozenset[str] = frozenset()
    for kind, spec in data["kinds"].items():
        titles[kind] = spec["title"]
        for c in spec.get("codes") or []:
            system = systems[c.get("system", "snomed")]
            entry = CodeEntry(kind, system, str(c["code"]), c["display"], c.get("cpr"))
            if (system, entry.code) in by_coding:
                raise ValueError(f"eol_codes: code {entry.code} listed twice")
            by_coding[(system, entry.code)] = entry
        # every kind is also addressable by its own local kind code (meta.tag or code)
        local = local_code(kind)
        by_coding.setdefault(
            (systems["kind"], local), CodeEntry(kind, systems["kind"], local, spec["title"])
        )
        consent = spec.get("consent")
        if consent:
            consent_rules[(consent["scope"], consent["category"])] = (kind, consent.get("default_cpr"))
        if spec.get("questionnaire_markers"):
            markers = tuple(m.lower() for m in spec["questionnaire_markers"])
        if spec.get("attorney_roles"):
            roles = frozenset(spec["attorney_roles"])
    for alias in data.get("kind_system_aliases") or []:
        for (system, code), entry in list(by_coding.items()):
            if system == systems["kind"]:
                by_coding.setdefault((alias, code), entry)
    missing = set(KIND_ORDER) - set(titles)
    if missing:
        raise ValueError(f"eol_codes: kinds missing: {sorted(missing)}")
    return CodeBook(
        systems=systems,
        titles=titles,
        by_coding=by_coding,
        source_tag_systems=tuple(data.get("source_tag_systems") or ()),
        consent_rules=consent_rules,
        questionnaire_markers=markers,
        attorney_roles=roles,
        raw=data,
    )


@lru_cache(maxsize=1)
def codebook() -> CodeBook:
    """The packaged code book (parsed once)."""
    with CODES_FILE.open(encoding="utf-8") as fh:
        return parse_codebook(yaml.safe_load(fh))
