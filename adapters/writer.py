"""Writing through the core: transaction Bundles, change detection, Provenance, merges.

Every write goes through the exchange's own transaction processing
(``exchange.interactions.bundle.process_bundle``; FHIR R4 http.html#transaction) inside
the caller's database transaction, so a batch is all-or-nothing. Before writing, the
current versions are read in one query: resources whose content is unchanged (apart
from ``meta.versionId`` / ``meta.lastUpdated``) are not sent at all, which makes re-runs
cheap and keeps Provenance for real changes only (docs/adapters.md, "Idempotency").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, update

from adapters.bulk import put_many
from adapters.people import add_link, compose
from adapters.provenance import build_provenance
from adapters.tables import adapter_unmatched
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.pipeline.context import RequestContext, Requester
from exchange.repository.store import fhir_instant, now_utc
from exchange.services import Services

#: resource types whose retraction is ``entered-in-error`` (element, value) rather than a delete
ENTERED_IN_ERROR: dict[str, tuple[str, Any]] = {
    t: ("status", "entered-in-error")
    for t in (
        "Observation", "DiagnosticReport", "MedicationStatement", "MedicationRequest",
        "MedicationAdministration", "Immunization", "Procedure", "Encounter", "EpisodeOfCare",
        "CarePlan", "ServiceRequest", "CareTeam", "Flag", "Task", "DocumentReference",
        "Composition", "Consent", "Goal", "ClinicalImpression", "Communication",
        "QuestionnaireResponse", "RiskAssessment", "DeviceRequest", "Appointment",
    )
}
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/{}-verification"
ENTERED_IN_ERROR["Condition"] = ("verificationStatus", {"coding": [
    {"system": _VERIFICATION.format("condition-ver"), "code": "entered-in-error"}]})
ENTERED_IN_ERROR["AllergyIntolerance"] = ("verificationStatus", {"coding": [
    {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
     "code": "entered-in-error"}]})


@dataclass
class Current:
    version_id: int
    deleted: bool
    data: dict[str, Any] | None


@dataclass
class WriteResult:
    created: list[str] = field(default_factory=list)  # "Type/id/_history/n"
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)  # updated to entered-in-error
    unchanged: int = 0


def system_context(adapter_name: str) -> RequestContext:
    """The request context of an ingest: a system requester named after the adapter."""
    requester = Requester(kind="system", client_id=f"adapter:{adapter_name}",
                          scopes=frozenset({"system/*.*", "system/*.cruds"}))
    return RequestContext(requester=requester, method="POST", interaction="transaction")


def services_for(conn: Connection, settings: Any = None) -> Services:
    from exchange.pipeline.disclosure import PermitAll
    from exchange.settings import Settings

    return Services(settings=settings or Settings(auth_enabled=False), engine=conn.engine, gate=PermitAll())


def read_current(conn: Connection, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Current]:
    """Current version, deleted flag and content of (type, id) pairs, in few queries."""
    out: dict[tuple[str, str], Current] = {}
    uniq = sorted(set(refs))
    if not uniq:
        return out
    if conn.dialect.name == "postgresql":  # one constant statement (array parameters)
        for row in conn.exec_driver_sql(_PG_READ_CURRENT, ([t for t, _ in uniq], [i for _, i in uniq])):
            data = orjson.loads(row.content) if row.content is not None else None
            out[(row.res_type, row.res_id)] = Current(row.version_id, bool(row.deleted), data)
        return out
    # SQLite: a JSON array of keys joined to the (res_type, res_id) index, one indexed
    # lookup per key (a row-value IN list would scan the whole index for every batch)
    for row in conn.exec_driver_sql(_SQLITE_READ_CURRENT, (orjson.dumps(uniq).decode(),)):
        data = orjson.loads(row.content) if row.content is not None else None
        out[(row.res_type, row.res_id)] = Current(row.version_id, bool(row.deleted), data)
    return out


_SQLITE_READ_CURRENT = (
    "SELECT c.res_type, c.res_id, c.version_id, c.deleted, v.content FROM json_each(?) AS j "
    "JOIN resource_current AS c ON c.res_type = json_extract(j.value, '$[0]') "
    "AND c.res_id = json_extract(j.value, '$[1]') JOIN resource_version AS v ON v.seq = c.seq"
)
_PG_READ_CURRENT = (
    "SELECT c.res_type, c.res_id, c.version_id, c.deleted, v.content FROM resource_current c "
    "JOIN unnest(%s::text[], %s::text[]) AS u(t, i) ON c.res_type = u.t AND c.res_id = u.i "
    "JOIN resource_version v ON v.seq = c.seq"
)


def same_content(stored: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Equal apart from meta.versionId / meta.lastUpdated."""
    if stored is None:
        return False

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (d.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        return {**{k: v for k, v in d.items() if k != "meta"}, "meta": meta}

    return strip(stored) == strip(new)


def write_changes(conn: Connection, svc: Services, ctx: RequestContext,
                  puts: list[dict[str, Any]], deletes: list[tuple[str, str]]) -> tuple[WriteResult, dict[tuple[str, str], Current]]:
    """Write changed resources (batched, :mod:`adapters.bulk`) and delete existing ones.

    Deletes go through the core transaction processing (``process_bundle``); both run in
    ``conn``'s transaction.
    """
    refs = [(r["resourceType"], r["id"]) for r in puts] + list(deletes)
    before = read_current(conn, refs)
    result = WriteResult()
    changed: list[dict[str, Any]] = []
    for res in puts:
        cur = before.get((res["resourceType"], res["id"]))
        if cur is not None and not cur.deleted and same_content(cur.data, res):
            result.unchanged += 1
        else:
            changed.append(res)
    for rtype, rid, version, created in put_many(conn, changed):
        (result.created if created else result.updated).append(f"{rtype}/{rid}/_history/{version}")
    doomed = [(t, i) for t, i in deletes if (cur := before.get((t, i))) is not None and not cur.deleted]
    if doomed:
        from exchange.interactions.bundle import process_bundle

        entries = [{"request": {"method": "DELETE", "url": f"{t}/{i}"}} for t, i in doomed]
        process_bundle(svc, ctx, {"resourceType": "Bundle", "type": "transaction", "entry": entries}, conn)
        after = read_current(conn, doomed)
        result.deleted = [f"{t}/{i}/_history/{after[(t, i)].version_id}" for t, i in doomed
                          if (t, i) in after and after[(t, i)].deleted]
    return result, before


def write_provenance(conn: Connection, svc: Services, ctx: RequestContext, *, targets: dict[str, list[str]],
                     source_system: str, adapter_name: str, adapter_version: str, feed: str,
                     note: str | None = None, owners: dict[str, str | None] | None = None) -> int:
    """One Provenance per activity (CREATE / UPDATE / DELETE) and per patient concerned.

    ``owners`` maps ``Type/id`` to the patient the resource is about. Grouping by patient
    keeps one person's provenance apart from another's: the consent layer shows a
    Provenance only when every target is visible, so a batch-wide Provenance would be
    hidden from a clinician who may see just one of the people in the batch.
    """
    recorded = fhir_instant(now_utc())
    entries = []
    for activity in ("CREATE", "UPDATE", "DELETE"):
        groups: dict[str | None, list[str]] = {}
        for target in targets.get(activity) or []:
            key = "/".join(target.split("/")[:2])
            groups.setdefault((owners or {}).get(key), []).append(target)
        for group in groups.values():
            prov = build_provenance(targets=group, activity=activity, source_system=source_system,
                                    adapter_name=adapter_name, adapter_version=adapter_version, feed=feed,
                                    recorded=recorded, note=note)
            entries.append(prov)
    put_many(conn, entries)
    return len(entries)


def retracted_version(rtype: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The entered-in-error form of a resource, or None if its type is deleted instead."""
    if rtype not in ENTERED_IN_ERROR:
        return None
    element, value = ENTERED_IN_ERROR[rtype]
    out = {k: v for k, v in data.items()}
    out["meta"] = {k: v for k, v in (data.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out[element] = value
    return out


def _rewrite_patient_refs(node: Any, old: str, new: str) -> bool:
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and value == old:
                node[key] = new
                changed = True
            elif isinstance(value, dict | list):
                changed = _rewrite_patient_refs(value, old, new) or changed
    elif isinstance(node, list):
        for item in node:
            changed = _rewrite_patient_refs(item, old, new) or changed
    return changed


def merge_patients(conn: Connection, ctx: RequestContext, survivor_id: str, merged_id: str, source: str,
                   *, svc: Services | None = None, adapter_name: str = "merge", adapter_version: str = "1",
                   feed: str = "merge") -> dict[str, Any]:
    """Merge shared Patient ``merged_id`` into ``survivor_id`` (FHIR R4 patient.html#links).

    Adds ``link`` replaces / replaced-by, marks the merged Patient inactive, moves the
    merged person's source records and every current reference ``Patient/<merged_id>``
    (except in Provenance and AuditEvent, which are history) to the survivor, and
    records a Provenance. Runs in ``conn``'s transaction; repeating it changes nothing.
    """
    if survivor_id == merged_id:
        return {"survivor": survivor_id, "merged": merged_id, "changed": False, "moved": 0}
    svc = svc or services_for(conn)
    add_link(conn, survivor_id, merged_id, source)
    puts: list[dict[str, Any]] = []
    composed = compose(conn, {survivor_id}).get(survivor_id)
    if composed is not None:
        puts.append(composed)
    current = read_current(conn, [("Patient", merged_id), ("Patient", survivor_id)])
    merged_cur = current.get(("Patient", merged_id))
    if composed is None and (cur := current.get(("Patient", survivor_id))) and cur.data and not cur.deleted:
        survivor = {k: v for k, v in cur.data.items()}
        links = [lk for lk in survivor.get("link") or [] if lk.get("other", {}).get("reference") != f"Patient/{merged_id}"]
        survivor["link"] = links + [{"other": {"reference": f"Patient/{merged_id}"}, "type": "replaces"}]
        puts.append(survivor)
    if merged_cur is not None and merged_cur.data and not merged_cur.deleted:
        merged = {k: v for k, v in merged_cur.data.items()}
        merged["link"] = [{"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"}]
        merged["active"] = False
        puts.append(merged)
    old, new = f"Patient/{merged_id}", f"Patient/{survivor_id}"
    needle = orjson.dumps(old)  # the JSON string literal, quotes included
    if conn.dialect.name == "sqlite":
        found = func.instr(rv.c.content, needle) > 0
    else:
        found = rv.c.content.like(b"%" + needle + b"%")
    q = (
        select(rc.c.res_type, rv.c.content)
        .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
        .where(rc.c.deleted.is_(False), rc.c.res_type.not_in(("Patient", "Provenance", "AuditEvent")),
               found)
    )
    moved = 0
    for row in conn.execute(q):
        data = orjson.loads(row.content)
        if _rewrite_patient_refs(data, old, new):
            puts.append(data)
            moved += 1
    result, _ = write_changes(conn, svc, ctx, puts, [])
    conn.execute(update(adapter_unmatched).where(
        adapter_unmatched.c.patient_id == merged_id, adapter_unmatched.c.status == "open").values(
        status="resolved", resolved_to=survivor_id, resolved=now_utc()))
    changed = result.created + result.updated
    if changed:
        write_provenance(conn, svc, ctx, targets={"UPDATE": changed}, source_system=source,
                         adapter_name=adapter_name, adapter_version=adapter_version, feed=feed,
                         note=f"merge: Patient/{merged_id} replaced by Patient/{survivor_id}")
    return {"survivor": survivor_id, "merged": merged_id, "changed": bool(changed), "moved": moved}
