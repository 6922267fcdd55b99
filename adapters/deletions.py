"""Deletions in full-extract sources (docs/adapters.md, "Deletions in full extracts").

A full-extract source (``SourceAdapter.full_extract``) sends every live record each
run; a record present in the last *complete* run and absent now was deleted in the
source. The pipeline remembers, per (source system, adapter), which (resource type,
local key) each source record produced (``adapter_seen``). At the end of a complete run:

* keys of records that did not appear at all are retracted;
* keys a re-sent record no longer produces are retracted;
* records that appeared but were rejected keep their previous keys (a defective row
  is not a deleted row); if an unreadable record had no source id, nothing is retracted
  (a warning says why) because its keys cannot be told apart.

Retracted resources become ``entered-in-error`` where the type has that status, or are
deleted; a Patient loses that source's contribution. ``SourceAdapter.deleted_ids`` may
add explicit deletions on top. Provenance records them with activity DELETE.

Retractions inside a batch (:func:`plan_batch`) apply in source order to the batch's own
staged resources as well as to what is stored: an HL7 v2 A11 that cancels an A01 of the
same batch retracts that admission; a record re-sent after its cancellation is live again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from adapters.base import Retraction
from adapters.tables import adapter_seen

if TYPE_CHECKING:
    from adapters.pipeline import Run

Ref = tuple[str, str]  # (resource type, stored id)


def plan_batch(steps: Iterable[tuple[list[dict[str, Any]], list[Ref]]], stored: dict[Ref, Any],
               retracted: Callable[[str, dict[str, Any]], dict[str, Any] | None]) -> tuple[list[dict[str, Any]], list[Ref]]:
    """The puts and deletes of one batch, applying each record's writes then its retractions in order.

    ``steps``: per record, its finished resources and the stored ids it retracts.
    ``stored``: current stored versions (objects with ``deleted`` and ``data``) of the
    retracted ids. ``retracted(type, data)``: the entered-in-error form, or None to delete.
    A retraction targets the latest staged version of the id in this batch, else the
    stored one; nothing staged and nothing live stored means nothing to retract. Each id
    appears once in the result (its last state), in first-seen order.
    """
    plan: dict[Ref, dict[str, Any] | None] = {}
    for resources, refs in steps:
        for res in resources:
            plan[(res["resourceType"], res["id"])] = res
        for ref in refs:
            if ref in plan:
                base = plan[ref]
                if base is None:  # already deleted in this batch
                    continue
            else:
                cur = stored.get(ref)
                if cur is None or cur.deleted or cur.data is None:
                    continue
                base = cur.data
            plan[ref] = retracted(ref[0], base)
    puts = [res for res in plan.values() if res is not None]
    deletes = [ref for ref, res in plan.items() if res is None]
    return puts, deletes


@dataclass
class Seen:
    produced: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    unidentified: int = 0  # unreadable records without a source id

    def record(self, source_id: str, resources: list[dict[str, Any]] | None) -> None:
        if resources is None:
            self.rejected.add(source_id)
            return
        self.produced.setdefault(source_id, set()).update((r["resourceType"], r["id"]) for r in resources)

    def unreadable(self, source_id: str | None) -> None:
        if source_id:
            self.rejected.add(source_id)
        else:
            self.unidentified += 1

    def source_ids(self) -> set[str]:
        return set(self.produced) | self.rejected


def _previous(conn: Connection, run: Run) -> list[Any]:
    q = select(adapter_seen.c.source_id, adapter_seen.c.res_type, adapter_seen.c.local_key).where(
        adapter_seen.c.source_system == run.source_system, adapter_seen.c.adapter == run.adapter.name)
    return list(conn.execute(q))


def gone(run: Run, seen: Seen) -> list[Retraction]:
    """What to retract at the end of a complete run."""
    out: list[Retraction] = []
    if run.adapter.full_extract:
        if seen.unidentified:
            run.report.problem("warning", "deletion", f"{seen.unidentified} unreadable record(s) without a "
                               "source id: deletion detection skipped for this run")
        else:
            with run.engine.connect() as conn:
                previous = _previous(conn, run)
            for row in previous:
                if row.source_id in seen.rejected:
                    continue
                produced = seen.produced.get(row.source_id)
                if produced is None or (row.res_type, row.local_key) not in produced:
                    out.append(Retraction(row.res_type, row.local_key))
    for rtype, key in run.adapter.deleted_ids(seen.source_ids(), run.mctx):
        out.append(Retraction(rtype, key))
    return out


def remember(conn: Connection, run: Run, seen: Seen) -> None:
    """Replace the stored key set with this complete run's (full extracts only)."""
    if not run.adapter.full_extract or seen.unidentified:
        return
    keep = [r for r in _previous(conn, run) if r.source_id in seen.rejected]
    conn.execute(delete(adapter_seen).where(
        adapter_seen.c.source_system == run.source_system, adapter_seen.c.adapter == run.adapter.name))
    rows = {(r.res_type, r.local_key): r.source_id for r in keep}
    for source_id, keys in seen.produced.items():
        for rtype, key in keys:
            rows[(rtype, key)] = source_id
    if rows:
        conn.execute(insert(adapter_seen), [
            {"source_system": run.source_system, "adapter": run.adapter.name, "res_type": t,
             "local_key": k, "source_id": sid} for (t, k), sid in rows.items()])
