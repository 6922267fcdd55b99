"""The unmatched queue: people who could not be matched with certainty (never a silent merge).

A person record without a verified NHS number whose demographics do not match exactly
one known person (rule in :mod:`adapters.identity`) is stored as a *provisional* Patient
of its own (id derived from the source and its local key, so its data is not lost and
not mixed with anyone's) and queued here for review. A reviewer resolves an entry by
naming the shared Patient it is (``exchange adapters unmatched resolve ID PATIENT``):
the provisional Patient is merged into it (``Patient.link`` replaced-by, references
moved). If a later run brings a verified NHS number, the entry is closed automatically.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from adapters.people import Resolution
from adapters.tables import adapter_unmatched
from exchange.repository.store import now_utc


def queue_unmatched(conn: Connection, source_system: str, resolutions: list[Resolution],
                    records: dict[str, Any]) -> int:
    """Queue the unmatched, close entries now matched; returns how many are unmatched."""
    if not resolutions:
        return 0
    keys = sorted({r.local_key for r in resolutions})
    existing: dict[str, Any] = {}
    for i in range(0, len(keys), 500):
        q = select(adapter_unmatched).where(adapter_unmatched.c.source_system == source_system,
                                            adapter_unmatched.c.local_key.in_(keys[i : i + 500]))
        existing.update({row.local_key: row for row in conn.execute(q)})
    when = now_utc()
    count = 0
    for res in {r.local_key: r for r in resolutions}.values():
        row = existing.get(res.local_key)
        if res.matched_by == "unmatched":
            count += 1
            values = {"patient_id": res.patient_id, "reason": res.reason or "",
                      "candidates": orjson.dumps(res.candidates).decode()}
            if row is None:
                conn.execute(adapter_unmatched.insert().values(
                    source_system=source_system, local_key=res.local_key, status="open", created=when, **values))
            elif row.status == "open" and (row.reason, row.candidates) != (values["reason"], values["candidates"]):
                conn.execute(update(adapter_unmatched).where(adapter_unmatched.c.id == row.id).values(**values))
        elif row is not None and row.status == "open":
            conn.execute(update(adapter_unmatched).where(adapter_unmatched.c.id == row.id).values(
                status="resolved", resolved_to=res.patient_id, resolved=when))
    return count


def list_entries(conn: Connection, status: str | None = "open") -> list[dict[str, Any]]:
    q = select(adapter_unmatched).order_by(adapter_unmatched.c.id)
    if status:
        q = q.where(adapter_unmatched.c.status == status)
    return [
        {"id": r.id, "sourceSystem": r.source_system, "localKey": r.local_key, "patient": r.patient_id,
         "reason": r.reason, "candidates": orjson.loads(r.candidates), "status": r.status,
         "resolvedTo": r.resolved_to}
        for r in conn.execute(q)
    ]


def resolve_entry(conn: Connection, entry_id: int, patient_id: str, *, settings: Any = None) -> dict[str, Any]:
    """A reviewer's decision: queue entry ``entry_id`` is the person ``Patient/patient_id``."""
    from adapters.writer import merge_patients, read_current, services_for, system_context
    from exchange.outcome import Invalid, NotFound

    row = conn.execute(select(adapter_unmatched).where(adapter_unmatched.c.id == entry_id)).first()
    if row is None:
        raise NotFound(f"no unmatched entry {entry_id}")
    if row.status != "open":
        raise Invalid(f"unmatched entry {entry_id} is already {row.status}")
    target = read_current(conn, [("Patient", patient_id)]).get(("Patient", patient_id))
    if target is None or target.deleted:
        raise NotFound(f"Patient/{patient_id} does not exist")
    outcome = merge_patients(conn, system_context("review"), patient_id, row.patient_id, row.source_system,
                             svc=services_for(conn, settings), adapter_name="unmatched-review",
                             feed=f"unmatched entry {entry_id}")
    conn.execute(update(adapter_unmatched).where(adapter_unmatched.c.id == entry_id).values(
        status="resolved", resolved_to=patient_id, resolved=now_utc()))
    return outcome
