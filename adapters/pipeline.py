"""The ingest pipeline every source record goes through (docs/adapters.md, "The pipeline").

read -> map -> validate (FHIR R4 structure, R4B models; a bad record is reported with
its place in the source and the exact element, the rest of the feed continues) ->
batch -> identity (NHS number first; uncertain people to the unmatched queue) ->
deterministic ids -> reference rewriting -> code mapping (ConceptMaps) -> security
labels (``consent.labels``) -> ``meta.source`` and a source-system tag -> one
transaction per batch through the core write path, unchanged resources skipped, one
Provenance per changed batch -> merges and retractions -> (full extracts) deletions.

Every mapped resource is deep-copied once before any of this, so rewriting in place
never reaches objects a mapper shares between resources or keeps in ``ctx.state``.
Retractions apply in source order to the batch's own staged resources as well as to
stored ones (:func:`adapters.deletions.plan_batch`).

Each batch is one database transaction: a crash leaves whole batches or nothing, and a
re-run converges because ids are deterministic and unchanged content is not rewritten.
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, insert, update

from adapters import deletions
from adapters.base import (
    MappingContext,
    MappingError,
    MergeRequest,
    RecordError,
    Retraction,
    SourceAdapter,
    SourceRecord,
)
from adapters.codemap import ConceptMapIndex
from adapters.identity import source_rank, stored_id
from adapters.people import (
    compose,
    known_people,
    remove_contribution,
    resolve_people,
    store_contributions,
)
from adapters.provenance import meta_source, source_tag
from adapters.references import dedupe, find_refs, keys_of_patients, rewrite_found
from adapters.report import IngestReport, ProgressCallback
from adapters.tables import adapter_run
from adapters.unmatched import queue_unmatched
from adapters.writer import (
    merge_patients,
    read_current,
    retracted_version,
    services_for,
    system_context,
    write_changes,
    write_provenance,
)
from consent.facts import patient_id_of
from consent.labels import apply_labels as _apply_labels
from exchange.outcome import FhirError
from exchange.repository.store import now_utc
from exchange.settings import Settings

BATCH_RESOURCES = 200



@dataclass
class Staged:
    record: SourceRecord
    resources: list[dict[str, Any]]
    merges: list[MergeRequest] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)
    rejected: bool = False
    #: per resource, its relative literal references (found once, rewritten in _finish)
    refs: list[list[tuple[dict[str, Any], str, str]]] = field(default_factory=list)

    def found_refs(self) -> list[list[tuple[dict[str, Any], str, str]]]:
        if len(self.refs) != len(self.resources):
            self.refs = [find_refs(r) for r in self.resources]
        return self.refs


class Run:
    """One ingest run's state: the adapter, the report, the people seen so far."""

    def __init__(self, engine: Engine, settings: Settings, adapter: SourceAdapter, source_system: str,
                 feed: str, dry_run: bool, batch_resources: int) -> None:
        self.engine, self.adapter, self.source_system = engine, adapter, source_system
        self.settings, self.dry_run, self.batch_resources = settings, dry_run, batch_resources
        self.report = IngestReport(adapter.name, source_system, feed, dry_run=dry_run, run_id=str(uuid.uuid4()))
        self.mctx = MappingContext(source_system=source_system, feed=feed)
        self.codemap = ConceptMapIndex.load(adapter.concept_map_paths())
        self.ctx = system_context(adapter.name)
        self.people: dict[str, str] = {}  # local person key -> shared Patient id (this run)
        self.meta_source = meta_source(source_system, adapter.name)
        self.tag = source_tag(source_system, adapter.description or adapter.name)
        self.rank = source_rank(adapter.source_kind)

    # ---- per record -------------------------------------------------------------------
    def map_record(self, record: SourceRecord) -> Staged | None:
        report, mctx = self.report, self.mctx
        n_merge, n_retract, n_warn = len(mctx.merges), len(mctx.retractions), len(mctx.warnings)
        try:
            mapped = self.adapter.map(record, mctx)
            # one deep copy, so rewriting ids and references in place can never reach an
            # object the mapper shares between resources or keeps in ctx.state
            resources = orjson.loads(orjson.dumps(mapped))
        except orjson.JSONEncodeError as exc:
            self._reject(record, "mapping", f"mapped resource is not JSON: {exc}", None)
            return None
        except MappingError as exc:
            self._reject(record, "mapping", exc.reason, exc.element)
            return None
        except Exception as exc:  # an adapter bug must not stop the feed
            self._reject(record, "mapping", f"adapter error: {type(exc).__name__}: {exc}", None)
            return None
        for text in mctx.warnings[n_warn:]:
            report.problem("warning", "mapping", text, location=record.location, source_id=record.source_id)
        del mctx.warnings[n_warn:]
        from exchange.validation import validate_resource

        ss = self.source_system
        refs = []
        for res in resources:
            rtype, local = res.get("resourceType"), res.get("id")
            if not isinstance(rtype, str) or not isinstance(local, str) or not local:
                self._reject(record, "mapping", "every mapped resource needs resourceType and a local id", "id")
                return None
            # validate the resource as it will be stored (stored id, references rewritten
            # with deterministic ids), then put the local keys back for the batch step;
            # validation only reads, so no copy is needed
            found = find_refs(res)
            originals = [holder["reference"] for holder, _, _ in found]
            res["id"] = stored_id(ss, local, rtype)
            rewrite_found(found, lambda t, k: stored_id(ss, k, t))
            try:
                validate_resource(res)
            except FhirError as exc:
                issue = exc.issues[0]
                self._reject(record, "validation", issue.diagnostics, ", ".join(issue.expression) or None)
                return None
            finally:
                res["id"] = local
                for (holder, _, _), value in zip(found, originals, strict=True):
                    holder["reference"] = value
            refs.append(found)
        return Staged(record, resources, mctx.merges[n_merge:], mctx.retractions[n_retract:], refs=refs)

    def _reject(self, record: SourceRecord, kind: str, reason: str, element: str | None) -> None:
        self.report.rejected += 1
        self.report.problem("error", kind, reason, location=record.location, element=element,
                            source_id=record.source_id)

    # ---- per batch --------------------------------------------------------------------
    def flush(self, batch: list[Staged]) -> None:
        if not batch:
            return
        while True:
            live = [s for s in batch if not s.rejected]
            try:
                with self.engine.connect() as conn:
                    if conn.dialect.name == "sqlite" and not self.dry_run:
                        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                    tx = conn.begin()
                    try:
                        self._write_batch(conn, live)
                    except BaseException:
                        tx.rollback()
                        raise
                    if self.dry_run:
                        tx.rollback()
                    else:
                        tx.commit()
                return
            except FhirError as exc:  # the core refused an entry: reject that record, retry
                culprit = self._culprit(live, exc)
                if culprit is None:
                    for s in live:
                        s.rejected = True
                        self._reject(s.record, "write", exc.issues[0].diagnostics, None)
                    return
                culprit.rejected = True
                self._reject(culprit.record, "write", exc.issues[0].diagnostics,
                             ", ".join(exc.issues[0].expression) or None)

    def _culprit(self, live: list[Staged], exc: FhirError) -> Staged | None:
        import re

        text = " ".join(exc.issues[0].expression) + " " + exc.issues[0].diagnostics
        m = re.search(r"(\w+)/([A-Za-z0-9\-.]+)", text.split(")")[0].split("(")[-1]) if "(" in text else None
        if m:
            for s in live:
                if any(r.get("resourceType") == m.group(1) and r.get("id") == m.group(2) for r in s.resources):
                    return s
        return None

    def _write_batch(self, conn: Connection, live: list[Staged]) -> None:
        report, ss = self.report, self.source_system
        svc = services_for(conn, self.settings)
        patients = [r for s in live for r in s.resources if r["resourceType"] == "Patient"]
        resolutions = resolve_people(conn, ss, patients)
        people = dict(self.people)
        people.update({r.local_key: r.patient_id for r in resolutions})
        keys_of = [set().union(*map(keys_of_patients, s.found_refs())) for s in live]
        wanted = {ref for keys in keys_of for ref in keys if ref not in people}
        wanted |= {k for s in live for m in s.merges for k in (m.survivor, m.merged)} - set(people)
        if wanted:
            people.update(known_people(conn, ss, sorted(wanted)))
        for s, keys in zip(live, keys_of, strict=True):
            missing = sorted(k for k in keys if k not in people)
            if missing:
                s.rejected = True
                self._reject(s.record, "reference", f"Patient/{missing[0]} is not a person this source has sent", "subject")
        live = [s for s in live if not s.rejected]
        kept = {r["id"] for s in live for r in s.resources if r["resourceType"] == "Patient"}
        resolutions = [r for r in resolutions if r.local_key in kept]
        by_key = {r.local_key: r for r in resolutions}
        contributions = []
        for s in live:
            for res, found in zip(s.resources, s.found_refs(), strict=True):
                self._finish(res, found, people, s.record)
                if res["resourceType"] == "Patient":
                    contributions.append((by_key[res["id"]], res))
        store_contributions(conn, ss, self.rank, contributions)
        touched = {r.patient_id for r, _ in contributions}
        for r in (r for s in live for r in s.retractions if r.resource_type == "Patient"):
            if pid := remove_contribution(conn, ss, r.local_key):
                touched.add(pid)
        steps = [([r for r in s.resources if r["resourceType"] != "Patient"], self._retraction_ids(s.retractions))
                 for s in live]
        stored = read_current(conn, [ref for _, refs in steps for ref in refs])
        puts, deletes = deletions.plan_batch(steps, stored, retracted_version)
        moved_from = {r.previous for r in resolutions if r.previous and r.previous != r.patient_id}
        touched |= moved_from
        composed = compose(conn, touched)
        touched_ids = {pid for pid, shared in composed.items() if shared is not None}
        for pid, shared in composed.items():
            if shared is not None:
                puts.append(shared)
            elif pid not in moved_from:  # no source describes this person any more
                deletes.append(("Patient", pid))
        result, _ = write_changes(conn, svc, self.ctx, dedupe(puts), deletes)
        self._count(result, retracted={(t, i) for s in live for t, i in self._retraction_ids(s.retractions)})
        if result.created or result.updated or result.deleted or result.retracted:
            report.provenance_written += write_provenance(
                conn, svc, self.ctx, targets={"CREATE": result.created, "UPDATE": result.updated,
                                              "DELETE": result.deleted + result.retracted},
                source_system=ss, adapter_name=self.adapter.name, adapter_version=str(self.adapter.version),
                feed=report.feed, owners={f"{r['resourceType']}/{r['id']}": patient_id_of(r) for r in puts})
        for r in resolutions:  # a person now resolved elsewhere (e.g. an NHS number arrived)
            if r.previous and r.previous != r.patient_id and r.previous not in touched_ids:
                merge_patients(conn, self.ctx, r.patient_id, r.previous, ss, svc=svc, adapter_name=self.adapter.name,
                               adapter_version=str(self.adapter.version), feed=report.feed)
        for s in live:
            for m in s.merges:
                if m.survivor in people and m.merged in people:
                    merge_patients(conn, self.ctx, people[m.survivor], people[m.merged], ss, svc=svc,
                                   adapter_name=self.adapter.name, adapter_version=str(self.adapter.version),
                                   feed=report.feed)
                else:
                    unknown = ", ".join(k for k in (m.survivor, m.merged) if k not in people)
                    report.problem("warning", "identity", f"merge of {m.merged} into {m.survivor} not done: "
                                   f"this source has sent no person {unknown}",
                                   location=s.record.location, source_id=s.record.source_id)
        report.unmatched += queue_unmatched(conn, ss, resolutions, {r["id"]: s.record for s in live
                                                                     for r in s.resources if r["resourceType"] == "Patient"})
        report.batches_written += 0 if self.dry_run else 1
        self.people = people

    def _finish(self, res: dict[str, Any], found: list[tuple[dict[str, Any], str, str]], people: dict[str, str],
                record: SourceRecord) -> None:
        """ids, references (``found`` by :func:`find_refs` when the record was mapped),
        code mapping, labels and meta, in place."""
        ss = self.source_system
        if res["resourceType"] != "Patient":
            res["id"] = stored_id(ss, res["id"], res["resourceType"])
        rewrite_found(found, lambda t, k: people[k] if t == "Patient" else stored_id(ss, k, t))
        for miss in self.codemap.translate(res):
            self.report.problem("warning", "codemap", f"unmapped code {miss.system}|{miss.code}",
                                location=record.location, element=f"{res['resourceType']}.{miss.path}",
                                source_id=record.source_id)
        res = _apply_labels(res) or res
        meta = {k: v for k, v in (res.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        meta["source"] = self.meta_source
        tags = [t for t in meta.get("tag") or [] if t.get("system") != self.tag["system"]]
        meta["tag"] = [*tags, self.tag]
        res["meta"] = meta

    def _retraction_ids(self, retractions: list[Retraction]) -> list[tuple[str, str]]:
        return [(r.resource_type, stored_id(self.source_system, r.local_key, r.resource_type))
                for r in retractions if r.resource_type != "Patient"]

    def _count(self, result: Any, retracted: set[tuple[str, str]]) -> None:
        report = self.report
        report.unchanged += result.unchanged
        report.deleted += len(result.deleted)
        nullified = [t for t in result.updated if tuple(t.split("/")[:2]) in retracted]
        result.retracted = nullified
        result.updated = [t for t in result.updated if t not in nullified]
        report.deleted += len(nullified)
        report.created += len(result.created)
        report.updated += len(result.updated)

    # ---- the run ----------------------------------------------------------------------
    def execute(self, items: Iterable[SourceRecord | RecordError], progress: ProgressCallback | None) -> IngestReport:
        with _fewer_collections():
            return self._execute(items, progress)

    def _execute(self, items: Iterable[SourceRecord | RecordError], progress: ProgressCallback | None) -> IngestReport:
        report, started = self.report, time.perf_counter()
        self._record_run("running")
        seen = deletions.Seen()
        batch: list[Staged] = []
        size = 0
        try:
            for item in items:
                report.read += 1
                if isinstance(item, RecordError):
                    report.rejected += 1
                    report.problem("error", "read", item.reason, location=item.location, element=item.element,
                                   source_id=item.source_id)
                    seen.unreadable(item.source_id)
                    continue
                staged = self.map_record(item)
                seen.record(item.source_id, staged.resources if staged else None)
                if staged is None:
                    continue
                batch.append(staged)
                size += len(staged.resources) + len(staged.retractions)
                if size >= self.batch_resources or staged.merges:
                    self.flush(batch)
                    batch, size = [], 0
                    if progress:
                        progress(report)
            self.flush(batch)
            gone = deletions.gone(self, seen)
            if gone:
                self.flush([Staged(SourceRecord("(deleted in source)", "deletion", None, _feed_location(report)),
                                   [], retractions=gone)])
            if not self.dry_run:
                with self.engine.begin() as conn:
                    deletions.remember(conn, self, seen)
            report.status = "complete"
        except BaseException:
            report.status = "failed"
            raise
        finally:
            report.seconds = time.perf_counter() - started
            self._record_run(report.status)
            if progress:
                progress(report)
        return report

    def _record_run(self, status: str) -> None:
        if self.dry_run:
            return
        r = self.report
        with self.engine.begin() as conn:
            if status == "running":
                conn.execute(insert(adapter_run).values(
                    id=r.run_id, adapter=r.adapter, source_system=r.source_system, feed=r.feed[:2000],
                    status=status, started=now_utc()))
            else:
                conn.execute(update(adapter_run).where(adapter_run.c.id == r.run_id).values(
                    status=status, finished=now_utc(), counts=orjson.dumps(r.counts()).decode()))


#: youngest-generation threshold of the cyclic garbage collector while an ingest runs
INGEST_GC_THRESHOLD = 20_000
_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, ...] = ()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often during an ingest, then restore it.

    A batch allocates hundreds of thousands of short-lived, acyclic dicts and lists
    (mapped resources, validation models, index rows), which with the default threshold
    (700 allocations) start a collection every few resources, and every so often a
    full one over the whole heap (fhir.resources' models, the registry): about a tenth
    of the ingest's CPU time. Reference counting frees those objects either way; cycles
    are still collected, less often. Nested and concurrent runs share one setting
    (counted), and the previous thresholds come back when the last run ends."""
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(_gc_saved[0], INGEST_GC_THRESHOLD), *_gc_saved[1:])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_saved)


def _feed_location(report: IngestReport) -> Any:
    from adapters.base import SourceLocation

    return SourceLocation(file=report.feed)


def ingest(engine: Engine, settings: Settings, adapter: SourceAdapter, paths: Sequence[Path | str], *,
           source_system: str | None = None, dry_run: bool = False, progress: ProgressCallback | None = None,
           batch_resources: int = BATCH_RESOURCES) -> IngestReport:
    """Run ``adapter`` over ``paths`` into the exchange (or only validate, ``dry_run``)."""
    ss = source_system or adapter.default_source_system or adapter.name
    paths = [Path(p) for p in paths]
    feed = ", ".join(str(p) for p in paths)
    run = Run(engine, settings, adapter, ss, feed, dry_run, batch_resources)
    return run.execute(adapter.read(paths), progress)


def ingest_records(engine: Engine, settings: Settings, adapter: SourceAdapter,
                   records: Iterable[SourceRecord | RecordError], *, feed: str, source_system: str | None = None,
                   dry_run: bool = False, progress: ProgressCallback | None = None,
                   batch_resources: int = BATCH_RESOURCES) -> IngestReport:
    """Like :func:`ingest` for records already read (e.g. one HL7 v2 message from MLLP).

    ``feed`` names the input in Provenance and the report. Deletion detection of
    full-extract adapters runs only if ``records`` is the whole extract.
    """
    ss = source_system or adapter.default_source_system or adapter.name
    run = Run(engine, settings, adapter, ss, feed, dry_run, batch_resources)
    return run.execute(records, progress)


__all__ = ["BATCH_RESOURCES", "Run", "ingest", "ingest_records", "merge_patients"]
