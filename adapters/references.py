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
    return keys_of_patients(find_refs(resources))


def keys_of_patients(found: list[tuple[dict[str, Any], str, str]]) -> set[str]:
    """The local person keys among references found by :func:`find_refs`."""
    return {key for _, rtype, key in found if rtype == "Patient" and not key.startswith("@")}


def find_refs(node: Any) -> list[tuple[dict[str, Any], str, str]]:
    """(object holding it, type, local key or ``@id``) of every relative literal
    reference ``Type/key`` in ``node``, in document order. The holders are the live
    objects, so a caller can rewrite them later without walking the resource again."""
    found: list[tuple[dict[str, Any], str, str]] = []
    if isinstance(node, dict):
        _refs_in_object(node, found)
    elif isinstance(node, list):
        _refs_in_array(node, found)
    return found


def rewrite_found(found: list[tuple[dict[str, Any], str, str]], fn: Any) -> None:
    """Set each found reference to ``Type/fn(type, key)`` (``Type/@id``: ``Type/id``)."""
    for holder, rtype, key in found:
        holder["reference"] = f"{rtype}/{key[1:]}" if key.startswith("@") else f"{rtype}/{fn(rtype, key)}"


def rewrite_refs(node: Any, fn: Any, dry: bool = False) -> None:
    """Apply ``fn(type, local key) -> stored id`` to every relative literal reference."""
    found = find_refs(node)
    if dry:
        for _, rtype, key in found:
            if not key.startswith("@"):
                fn(rtype, key)
        return
    rewrite_found(found, fn)


def _refs_in_object(node: dict[str, Any], found: list[tuple[dict[str, Any], str, str]]) -> None:
    for key, value in node.items():
        if key == "reference" and isinstance(value, str):
            parts = value.split("/")
            if len(parts) == 2 and parts[0][:1].isupper() and parts[1] and ":" not in value:
                found.append((node, parts[0], parts[1]))
        elif isinstance(value, dict):
            _refs_in_object(value, found)
        elif isinstance(value, list):
            _refs_in_array(value, found)


def _refs_in_array(node: list[Any], found: list[tuple[dict[str, Any], str, str]]) -> None:
    # only objects and arrays can hold a reference: scalars are not visited
    for item in node:
        if isinstance(item, dict):
            _refs_in_object(item, found)
        elif isinstance(item, list):
            _refs_in_array(item, found)
