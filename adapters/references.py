"""Reference rewriting for mapped resources (FHIR R4 references.html#literal).

Adapters write references with *local keys* (``Patient/LAS100200``,
``EpisodeOfCare/SRV55``); the pipeline rewrites each relative literal reference
``Type/key`` to the stored id -- the shared Patient for people, the deterministic id of
(source system, key, type) for everything else. ``Type/@id`` names a stored id
verbatim; absolute URLs, ``urn:`` references and contained ``#refs`` are left alone.
"""

from __future__ import annotations

from typing import Any


def dedupe(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last version of each (type, id) in the batch, in first-seen order."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in resources:
        out[(r["resourceType"], r["id"])] = r
    return list(out.values())


def patient_keys(resources: list[dict[str, Any]]) -> set[str]:
    keys: set[str] = set()
    rewrite_refs({"r": resources}, lambda t, k: keys.add(k) if t == "Patient" else None, dry=True)
    return keys


def rewrite_refs(node: Any, fn: Any, dry: bool = False) -> None:
    """Apply ``fn(type, local key) -> stored id`` to every relative literal reference."""
    if isinstance(node, dict):
        _refs_in_object(node, fn, dry)
    elif isinstance(node, list):
        _refs_in_array(node, fn, dry)


def _refs_in_object(node: dict[str, Any], fn: Any, dry: bool) -> None:
    for key, value in node.items():
        if key == "reference" and isinstance(value, str):
            parts = value.split("/")
            if len(parts) == 2 and parts[0][:1].isupper() and parts[1] and ":" not in value:
                if parts[1].startswith("@"):
                    if not dry:
                        node[key] = f"{parts[0]}/{parts[1][1:]}"
                else:
                    new = fn(parts[0], parts[1])
                    if not dry:
                        node[key] = f"{parts[0]}/{new}"
        elif isinstance(value, dict):
            _refs_in_object(value, fn, dry)
        elif isinstance(value, list):
            _refs_in_array(value, fn, dry)


def _refs_in_array(node: list[Any], fn: Any, dry: bool) -> None:
    # only objects and arrays can hold a reference: scalars are not visited
    for item in node:
        if isinstance(item, dict):
            _refs_in_object(item, fn, dry)
        elif isinstance(item, list):
            _refs_in_array(item, fn, dry)
