"""One shared Patient per person: resolution, composition and merges (docs/adapters.md, "Identity").

* :func:`resolve_people` decides, for a batch of a source's mapped Patients, which
  shared Patient each belongs to (rule in :mod:`adapters.identity`), with a few batched
  queries and no per-record round trips.
* :func:`store_contributions` keeps each source's Patient (``adapter_person``);
  :func:`compose` builds the shared Patient from all contributions: demographics from
  the most authoritative source (GP > hospital > community > social care), elements it
  lacks filled from the next source, identifiers from every source (NHS number first),
  one source tag per contributing system, ``link`` from merges.
* :func:`merge_patients` represents a source's merge (HL7 v2 ADT^A40) with
  ``Patient.link`` (FHIR R4 patient.html#links: survivor ``replaces``, merged
  ``replaced-by`` and inactive) and moves every reference to the merged Patient onto the
  survivor; later records naming the merged person resolve to the survivor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from adapters.identity import (
    NHS_SYSTEM,
    demographic_key,
    normalise_nhs_number,
    shared_patient_id,
    stored_id,
    verified_nhs_number,
)
from adapters.tables import adapter_patient_link, adapter_person
from exchange.repository.store import now_utc

_NOT_INHERITED = {"resourceType", "id", "meta", "identifier", "link", "text"}


@dataclass
class Resolution:
    local_key: str
    patient_id: str
    matched_by: str  # nhs-number | demographics | previous | unmatched
    nhs_number: str | None = None
    demo_key: str | None = None
    reason: str | None = None
    candidates: list[str] = field(default_factory=list)
    previous: str | None = None  # the Patient this person resolved to before, if any


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def follow_links(conn: Connection, ids: set[str]) -> dict[str, str]:
    """Map each Patient id to the end of its ``replaced-by`` chain (itself if none)."""
    result = {i: i for i in ids}
    pending = set(ids)
    for _ in range(8):  # merge chains are short; a bound guards against cycles
        if not pending:
            break
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(pending)):
            q = select(adapter_patient_link.c.patient_id, adapter_patient_link.c.other_id).where(
                adapter_patient_link.c.patient_id.in_(chunk), adapter_patient_link.c.link_type == "replaced-by"
            )
            found.update({r.patient_id: r.other_id for r in conn.execute(q)})
        if not found:
            break
        for start, end in result.items():
            if end in found:
                result[start] = found[end]
        pending = set(found.values())
    return result


def known_people(conn: Connection, source_system: str, local_keys: list[str]) -> dict[str, str]:
    """Shared Patient ids of a source's person keys already stored (others absent)."""
    out: dict[str, str] = {}
    for chunk in _chunks(sorted(set(local_keys))):
        q = select(adapter_person.c.local_key, adapter_person.c.patient_id).where(
            adapter_person.c.source_system == source_system, adapter_person.c.local_key.in_(chunk)
        )
        out.update({r.local_key: r.patient_id for r in conn.execute(q)})
    return out


def resolve_people(conn: Connection, source_system: str, patients: list[dict[str, Any]]) -> list[Resolution]:
    """Resolve mapped Patients (``id`` = local key) to shared Patient ids, in order."""
    keys = [p["id"] for p in patients]
    previous = known_people(conn, source_system, keys)
    nhs = {p["id"]: verified_nhs_number(p) for p in patients}
    demo = {p["id"]: demographic_key(p) for p in patients}
    wanted = sorted({d for k, d in demo.items() if d and not nhs[k]})
    candidates: dict[str, set[str]] = {d: set() for d in wanted}
    for chunk in _chunks(wanted):
        q = select(adapter_person.c.demo_key, adapter_person.c.patient_id).where(
            adapter_person.c.demo_key.in_(chunk), adapter_person.c.nhs_number.is_not(None)
        )
        for r in conn.execute(q):
            candidates[r.demo_key].add(r.patient_id)
    for k, d in demo.items():  # verified people earlier in the same batch count too
        if d in candidates and nhs[k]:
            candidates[d].add(shared_patient_id(nhs[k]))
    out: list[Resolution] = []
    for p in patients:
        k = p["id"]
        provisional = stored_id(source_system, k, "Patient")
        if nhs[k]:
            out.append(Resolution(k, shared_patient_id(nhs[k]), "nhs-number", nhs[k], demo[k]))
        elif k in previous and previous[k] != provisional:
            out.append(Resolution(k, previous[k], "previous", None, demo[k]))
        elif demo[k] and len(candidates.get(demo[k], ())) == 1:
            out.append(Resolution(k, next(iter(candidates[demo[k]])), "demographics", None, demo[k]))
        else:
            found = sorted(candidates.get(demo[k] or "", ()))
            if not demo[k]:
                why = "no verified NHS number and incomplete demographics (family, given, birth date, gender, postcode)"
            elif not found:
                why = "no verified NHS number and no person with a verified NHS number has these exact demographics"
            else:
                why = f"no verified NHS number and {len(found)} people share these demographics"
            out.append(Resolution(k, provisional, "unmatched", None, demo[k], why, found))
    ends = follow_links(conn, {r.patient_id for r in out})
    for r in out:
        r.patient_id = ends[r.patient_id]
        r.previous = previous.get(r.local_key)
    return out


def store_contributions(conn: Connection, source_system: str, rank: int,
                        items: list[tuple[Resolution, dict[str, Any]]]) -> None:
    """Upsert the source's Patients (resolved, references already rewritten)."""
    if not items:
        return
    latest = {res.local_key: (res, pat) for res, pat in items}
    when = now_utc()
    for chunk in _chunks(sorted(latest)):
        conn.execute(delete(adapter_person).where(
            adapter_person.c.source_system == source_system, adapter_person.c.local_key.in_(chunk)))
    conn.execute(insert(adapter_person), [
        {"source_system": source_system, "local_key": k, "patient_id": res.patient_id, "rank": rank,
         "nhs_number": res.nhs_number, "demo_key": res.demo_key, "updated": when,
         "content": orjson.dumps({x: v for x, v in pat.items() if x != "id"})}
        for k, (res, pat) in latest.items()
    ])


def remove_contribution(conn: Connection, source_system: str, local_key: str) -> str | None:
    """Forget a source's person record; returns the Patient id it contributed to."""
    row = conn.execute(select(adapter_person.c.patient_id).where(
        adapter_person.c.source_system == source_system, adapter_person.c.local_key == local_key)).first()
    if row is None:
        return None
    conn.execute(delete(adapter_person).where(
        adapter_person.c.source_system == source_system, adapter_person.c.local_key == local_key))
    return row.patient_id


def compose(conn: Connection, patient_ids: set[str]) -> dict[str, dict[str, Any] | None]:
    """The shared Patient of each id from its contributions (None = no contribution left)."""
    rows: dict[str, list[Any]] = {pid: [] for pid in patient_ids}
    links: dict[str, list[Any]] = {pid: [] for pid in patient_ids}
    for chunk in _chunks(sorted(patient_ids)):
        for r in conn.execute(select(adapter_person).where(adapter_person.c.patient_id.in_(chunk))):
            rows[r.patient_id].append(r)
        for r in conn.execute(select(adapter_patient_link).where(adapter_patient_link.c.patient_id.in_(chunk))):
            links[r.patient_id].append(r)
    out: dict[str, dict[str, Any] | None] = {}
    for pid in patient_ids:
        contribs = sorted(rows[pid], key=lambda r: (-r.rank, r.source_system, r.local_key))
        if not contribs:
            out[pid] = None
            continue
        parts = [orjson.loads(r.content) for r in contribs]
        shared = copy.deepcopy(parts[0])
        for part in parts[1:]:
            for key, value in part.items():
                if key not in shared and key not in _NOT_INHERITED:
                    shared[key] = copy.deepcopy(value)
        idents: list[dict[str, Any]] = []
        seen: set[tuple[Any, Any]] = set()
        for part in parts:
            for ident in part.get("identifier") or []:
                if ident.get("system") == NHS_SYSTEM and (digits := normalise_nhs_number(ident.get("value"))):
                    ident = {**ident, "value": digits}  # one spelling, so searches find it
                mark = (ident.get("system"), ident.get("value"))
                if mark not in seen:
                    seen.add(mark)
                    idents.append(ident)
        idents.sort(key=lambda i: i.get("system") != NHS_SYSTEM)
        meta = dict(parts[0].get("meta") or {})
        for name in ("tag", "security"):
            merged: list[dict[str, Any]] = []
            for part in parts:
                for coding in (part.get("meta") or {}).get(name) or []:
                    if coding not in merged:
                        merged.append(coding)
            if merged:
                meta[name] = merged
        shared = {"resourceType": "Patient", "id": pid, "meta": meta,
                  **{k: v for k, v in shared.items() if k not in ("resourceType", "id", "meta")}}
        if idents:
            shared["identifier"] = idents
        if links[pid]:
            shared["link"] = [{"other": {"reference": f"Patient/{r.other_id}"}, "type": r.link_type}
                              for r in sorted(links[pid], key=lambda r: (r.link_type, r.other_id))]
            if any(r.link_type == "replaced-by" for r in links[pid]):
                shared["active"] = False
        out[pid] = shared
    return out


def add_link(conn: Connection, survivor_id: str, merged_id: str, source_system: str) -> bool:
    """Record the merge links (both directions); False if they already existed."""
    exists = conn.execute(select(adapter_patient_link.c.patient_id).where(
        adapter_patient_link.c.patient_id == merged_id, adapter_patient_link.c.other_id == survivor_id)).first()
    if exists:
        return False
    when = now_utc()
    conn.execute(delete(adapter_patient_link).where(or_(
        and_(adapter_patient_link.c.patient_id == survivor_id, adapter_patient_link.c.other_id == merged_id),
        and_(adapter_patient_link.c.patient_id == merged_id, adapter_patient_link.c.link_type == "replaced-by"))))
    conn.execute(insert(adapter_patient_link), [
        {"patient_id": survivor_id, "other_id": merged_id, "link_type": "replaces",
         "source_system": source_system, "created": when},
        {"patient_id": merged_id, "other_id": survivor_id, "link_type": "replaced-by",
         "source_system": source_system, "created": when},
    ])
    conn.execute(update(adapter_person).where(adapter_person.c.patient_id == merged_id)
                 .values(patient_id=survivor_id))
    return True
