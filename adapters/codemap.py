"""Code mapping through ConceptMap resources loaded from files (FHIR R4 conceptmap.html).

Each adapter may ship ConceptMap JSON files (``SourceAdapter.concept_map_paths``). For
every Coding in a mapped resource whose system is the *source* of a loaded ConceptMap
group, the pipeline adds the target Coding(s) in front of the original one and keeps the
original alongside (so ``coding[0]`` is the standard code and nothing is lost). Codes of
a mapped system that the map does not cover -- or maps only as ``unmatched`` /
``disjoint`` -- are reported as unmapped, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_NO_MATCH = {"unmatched", "disjoint"}


@dataclass(frozen=True)
class Unmapped:
    system: str
    code: str
    path: str  # the element path of the CodeableConcept, e.g. "code" or "category[0]"


@dataclass
class ConceptMapIndex:
    """(source system, code) -> target codings, merged from any number of ConceptMaps."""

    targets: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    source_systems: set[str] = field(default_factory=set)
    map_urls: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> ConceptMapIndex:
        index = cls()
        for path in paths:
            data = orjson.loads(Path(path).read_bytes())
            maps = (
                [e.get("resource", {}) for e in data.get("entry", [])]
                if data.get("resourceType") == "Bundle"
                else [data]
            )
            for cm in maps:
                if cm.get("resourceType") != "ConceptMap":
                    raise ValueError(f"{path}: not a ConceptMap (resourceType {cm.get('resourceType')!r})")
                index.add(cm)
        return index

    def add(self, concept_map: dict[str, Any]) -> None:
        if concept_map.get("url"):
            self.map_urls.append(concept_map["url"])
        for group in concept_map.get("group") or []:
            source, target = group.get("source"), group.get("target")
            if not source:
                continue
            self.source_systems.add(source)
            for element in group.get("element") or []:
                code = element.get("code")
                if not code:
                    continue
                found = self.targets.setdefault((source, code), [])
                for t in element.get("target") or []:
                    if t.get("equivalence") in _NO_MATCH or not t.get("code") or not target:
                        continue
                    coding = {"system": target, "code": t["code"]}
                    if t.get("display"):
                        coding["display"] = t["display"]
                    if coding not in found:
                        found.append(coding)

    def __bool__(self) -> bool:
        return bool(self.source_systems)

    def translate(self, resource: dict[str, Any]) -> list[Unmapped]:
        """Add mapped codings in place; return the codes that could not be mapped."""
        if not self.source_systems:
            return []
        unmapped: list[Unmapped] = []
        for path, concept in _codeable_concepts(resource, ""):
            codings = concept["coding"]
            additions: list[dict[str, str]] = []
            for coding in codings:
                if not isinstance(coding, dict) or coding.get("system") not in self.source_systems:
                    continue
                targets = self.targets.get((coding["system"], str(coding.get("code"))))
                if not targets:
                    unmapped.append(Unmapped(coding["system"], str(coding.get("code")), path))
                    continue
                for t in targets:
                    if t not in codings and t not in additions:
                        additions.append(dict(t))
            if additions:
                concept["coding"] = additions + codings
        return unmapped


def _codeable_concepts(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every CodeableConcept (an object with a ``coding`` array) with its path, in
    document order; scalars are not visited (only objects and arrays can hold one)."""
    if isinstance(node, dict):
        if isinstance(node.get("coding"), list):
            yield path or ".", node
        for key, value in node.items():
            if key in ("coding", "contained", "meta") or not isinstance(value, dict | list):
                continue
            yield from _codeable_concepts(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _codeable_concepts(item, f"{path}[{i}]")
