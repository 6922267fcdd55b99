"""The ingest fast path writes exactly what the reference write path writes.

``adapters.bulk.put_many`` (set-based, one batch) must leave the same version bytes,
search index rows (every table) and consent facts / links as
``exchange.repository.store.write_version`` (one resource at a time, the REST write
path), for a varied set of resources, on first write and on update. And a whole
ingest through the adapter pipeline must leave the same index and consent rows as a
rebuild of them by the reference indexers (``indexer.reindex``, ``reindex_facts``), so
a change that drops or alters a row on the fast path fails here.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, select

from adapters.bulk import put_many
from consent.facts import reindex_facts
from consent.tables import consent_fact, consent_link
from exchange.db.engine import write_tx
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.repository.store import lock_current, write_version
from exchange.search import indexer
from exchange.search.tables import ALL_TABLES

ROOT = Path(__file__).resolve().parents[2]
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"
WHEN1 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
WHEN2 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def _handmade() -> list[dict[str, Any]]:
    """Edge cases of every index table: components, ranges, Timing, of-type identifiers,
    extensions, labels, directives, care-team links, canonical and absolute references."""
    subj = {"reference": "Patient/eq-pat"}
    return [
        {"resourceType": "Patient", "id": "eq-pat", "active": True,
         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009",
                         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]}}],
         "name": [{"family": "Ó'Brien", "given": ["Zoë", "Ann"], "prefix": ["Mrs"]}, {"text": "Annie OBrien"}],
         "telecom": [{"system": "phone", "value": "0151 000 0000"}, {"system": "email", "value": "a@example.org"}],
         "gender": "female", "birthDate": "1944-02", "deceasedBoolean": False,
         "address": [{"line": ["1 Breck Road"], "city": "Liverpool", "postalCode": "L5 6PX", "country": "GB"}],
         "generalPractitioner": [{"reference": "Organization/eq-org",
                                  "identifier": {"system": ODS, "value": "N82001"}}],
         "link": [{"other": {"reference": "Patient/eq-old"}, "type": "replaces"}],
         "extension": [{"url": "https://example.org/ext/ethnic", "valueCodeableConcept": {"text": "White"}}]},
        {"resourceType": "Organization", "id": "eq-org", "identifier": [{"system": ODS, "value": "N82001"}],
         "name": "Breck Road Practice", "active": True, "type": [{"coding": [{"system": "x", "code": "prov"}]}]},
        {"resourceType": "Observation", "id": "eq-bp", "status": "final", "subject": subj,
         "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                  "tag": [{"system": "https://example.org/tag", "code": "t1"}],
                  "profile": ["https://example.org/StructureDefinition/bp"], "source": "urn:exchange:source:RW4#x"},
         "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                   "code": "vital-signs"}]}],
         "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}],
                  "text": "BP"},
         "effectivePeriod": {"start": "2026-10-01T09:00:00+01:00", "end": "2026-10-01T09:05:00Z"},
         "performer": [{"reference": "Practitioner/eq-dr"}, {"reference": "https://example.org/fhir/Practitioner/9"}],
         "component": [
             {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
              "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
             {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
              "valueQuantity": {"value": 80.5, "unit": "mmHg"}},
             {"code": {"text": "note"}, "valueString": "sitting"},
             {"code": {"coding": [{"system": "http://loinc.org", "code": "x-range"}]},
              "valueRange": {"low": {"value": 1, "unit": "h"}, "high": {"value": 2}}},
         ]},
        {"resourceType": "Observation", "id": "eq-absent", "status": "final", "subject": subj,
         "code": {"text": "unknown"}, "dataAbsentReason": {"coding": [{"code": "asked-unknown"}]},
         "effectiveInstant": "2026-10-01T09:00:00.123Z", "valueCodeableConcept": {"text": "Positive"},
         "hasMember": [{"reference": "Observation/eq-bp"}], "derivedFrom": [{"reference": "#contained"}]},
        {"resourceType": "Observation", "id": "eq-bool", "status": "final", "subject": subj, "code": {"text": "b"},
         "valueBoolean": True, "effectiveDateTime": "2026"},
        {"resourceType": "Encounter", "id": "eq-enc", "status": "finished", "class": {"code": "AMB"}, "subject": subj,
         "serviceProvider": {"reference": "Organization/eq-org"},
         "period": {"start": "2026-09-01", "end": "2026-09-02"}, "length": {"value": 1, "unit": "d"},
         "participant": [{"individual": {"reference": "Practitioner/eq-dr"}, "type": [{"text": "Nurse"}]}],
         "reasonCode": [{"coding": [{"system": SCT, "code": "38341003", "display": "Hypertension"}]}]},
        {"resourceType": "EpisodeOfCare", "id": "eq-eoc", "status": "active", "patient": subj,
         "managingOrganization": {"identifier": {"system": ODS, "value": "RW4"}},
         "period": {"start": "2026-01-01", "end": "2026-10-02T09:30:00+01:00"}},
        {"resourceType": "CareTeam", "id": "eq-ct", "status": "inactive", "subject": subj,
         "period": {"start": "2025-01-01"}, "managingOrganization": [{"reference": "Organization/eq-org"}],
         "participant": [{"member": {"reference": "Organization/eq-org2",
                                     "identifier": {"system": ODS, "value": "X1"}}},
                         {"member": {"reference": "Practitioner/eq-dr"}}]},
        {"resourceType": "Condition", "id": "eq-cond", "subject": subj,
         "code": {"coding": [{"system": SCT, "code": "186747009", "display": "HIV"}]},
         "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetAge": {"value": 52, "unit": "a"},
         "abatementRange": {"low": {"value": 60}}, "recordedDate": "2026-09-01T10:00:00+02:00"},
        {"resourceType": "MedicationRequest", "id": "eq-mr", "status": "active", "intent": "order", "subject": subj,
         "medicationReference": {"reference": "Medication/eq-med"}, "authoredOn": "2026-09-01",
         "dosageInstruction": [{"timing": {"event": ["2026-09-02T08:00:00Z"],
                                           "repeat": {"boundsPeriod": {"start": "2026-09-02", "end": "2026-09-30"}}}}]},
        {"resourceType": "Consent", "id": "eq-consent", "status": "active", "patient": subj,
         "scope": {"coding": [{"code": "patient-privacy"}]}, "category": [{"text": "privacy"}],
         "dateTime": "2026-09-01", "provision": {"type": "deny", "actor": [
             {"role": {"text": "r"}, "reference": {"reference": "Organization/eq-org"}}]}},
        {"resourceType": "Provenance", "id": "eq-prov", "recorded": "2026-09-01T10:00:00Z",
         "target": [{"reference": "Patient/eq-pat/_history/1"}, {"reference": "Observation/eq-bp"}],
         "agent": [{"who": {"display": "x"}, "type": {"coding": [{"code": "author"}]}}],
         "activity": {"coding": [{"code": "CREATE"}]}},
        {"resourceType": "DocumentReference", "id": "eq-doc", "status": "current", "subject": subj,
         "content": [{"attachment": {"contentType": "text/plain", "url": "https://example.org/doc/1"}}],
         "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/eq-old"}}]},
        {"resourceType": "Flag", "id": "eq-flag", "status": "active", "subject": subj,
         "code": {"coding": [{"system": SCT, "code": "450476008"}]}, "period": {"start": "2026-01-01"}},
    ]


def _samples() -> list[dict[str, Any]]:
    """Hand-made edge cases, the GP Connect samples' resources and a bench patient bundle."""
    out = _handmade()
    for path in sorted((ROOT / "adapters" / "gp_connect" / "samples").glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        out.extend(e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict))
    from bench.population import patient_bundle

    out.extend(e["resource"] for e in patient_bundle(3, size=30)["entry"])
    seen, uniq = set(), []
    for r in out:
        if (r["resourceType"], r["id"]) not in seen and r["resourceType"] in indexer_served():
            seen.add((r["resourceType"], r["id"]))
            uniq.append(r)
    return uniq


def indexer_served() -> frozenset[str]:
    from exchange.validation import SERVED

    return SERVED


def _renamed(resources: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(resources)
    for r in out:
        r["id"] = f"{prefix}{r['id']}"[:64]
    return out


def _snapshot(conn, prefix: str) -> dict[str, Any]:  # noqa: ANN001
    """Every row the writes left for ids starting with ``prefix``, keyed by (type, id
    without the prefix) so two namespaces compare equal when the rows are the same."""
    cur = {row.rid: (row.res_type, row.res_id[len(prefix):])
           for row in conn.execute(select(rc.c.rid, rc.c.res_type, rc.c.res_id).where(rc.c.res_id.like(prefix + "%")))}
    snap: dict[str, Any] = {}

    def _norm(v: Any) -> Any:  # a Patient's own id appears in its facts
        return v[len(prefix):] if isinstance(v, str) and v.startswith(prefix) else _plain(v)

    for table in ALL_TABLES:
        rows = conn.execute(select(table).where(table.c.rid.in_(list(cur)))).mappings().all()
        snap[table.name] = _sorted(
            (cur[r["rid"]], tuple((k, _norm(v)) for k, v in sorted(r.items()) if k != "rid")) for r in rows)
    facts = conn.execute(select(consent_fact).where(consent_fact.c.rid.in_(list(cur)))).mappings().all()
    snap["consent_fact"] = _sorted((cur[r["rid"]], tuple((k, _norm(v)) for k, v in sorted(r.items())
                                                        if k not in ("rid", "res_id"))) for r in facts)
    links = conn.execute(select(consent_link).where(consent_link.c.rid.in_(list(cur)))).mappings().all()
    snap["consent_link"] = _sorted((cur[r["rid"]], tuple((k, _norm(v)) for k, v in sorted(r.items())
                                                        if k not in ("rid", "id"))) for r in links)
    pointers = conn.execute(select(rc.c.rid, rc.c.version_id, rc.c.last_updated, rc.c.deleted, rv.c.version_id)
                            .select_from(rc.join(rv, rv.c.seq == rc.c.seq)).where(rc.c.rid.in_(list(cur)))).all()
    snap["current"] = _sorted((cur[p[0]], p[1], _plain(p[2]), bool(p[3]), p[4]) for p in pointers)
    # the stored text itself (SQLite keeps datetimes as text and compares them lexically)
    for table, cols in (("resource_current", "last_updated, deleted, version_id"),
                        ("resource_version", "last_updated, deleted, version_id, method"),
                        ("search_date", "param, low, high"), ("consent_link", "kind, period_end"),
                        ("consent_fact", "restricted, not_for_patient, care_pref, directive")):
        raw = conn.exec_driver_sql(f"SELECT rid, {cols} FROM {table}").all()
        snap[f"raw {table}"] = _sorted((cur[r[0]], *r[1:]) for r in raw if r[0] in cur)
    versions = conn.execute(select(rv.c.rid, rv.c.version_id, rv.c.last_updated, rv.c.content, rv.c.method, rv.c.deleted)
                            .where(rv.c.rid.in_(list(cur)))).all()
    snap["versions"] = _sorted((cur[v.rid], v.version_id, _plain(v.last_updated), v.method, bool(v.deleted),
                               _unprefixed(v.content, prefix)) for v in versions)
    return snap


def _sorted(items: Any) -> list[Any]:
    return sorted(items, key=repr)  # rows hold None beside strings


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)).isoformat()
    return v


def _unprefixed(content: bytes | None, prefix: str) -> Any:
    if content is None:
        return None
    data = orjson.loads(bytes(content))
    data["id"] = data["id"][len(prefix):]
    return orjson.dumps(data)


def _reference_write(conn, resources: list[dict[str, Any]], when: datetime) -> None:  # noqa: ANN001
    for res in copy.deepcopy(resources):
        write_version(conn, res["resourceType"], res["id"], res, method="PUT",
                      current=lock_current(conn, res["resourceType"], res["id"]), when=when)


def _changed(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A second version of every resource: one element more or changed."""
    out = copy.deepcopy(resources)
    for i, r in enumerate(out):
        if i % 3 == 0:
            r["text"] = {"status": "generated", "div": f"<div xmlns=\"http://www.w3.org/1999/xhtml\">{i}</div>"}
        elif "status" in r:
            r["status"] = "entered-in-error"
        else:
            r["identifier"] = [{"system": "https://example.org/v2", "value": str(i)}]
    return out


def test_put_many_writes_what_write_version_writes(engine) -> None:  # noqa: ANN001
    base = _samples()
    assert len(base) >= 40 and len({r["resourceType"] for r in base}) >= 15
    ref, fast = _renamed(base, "eqr-"), _renamed(base, "eqf-")
    with write_tx(engine) as conn:
        _reference_write(conn, ref, WHEN1)
        put_many(conn, copy.deepcopy(fast), when=WHEN1)
        first_ref, first_fast = _snapshot(conn, "eqr-"), _snapshot(conn, "eqf-")
        _reference_write(conn, _changed(ref), WHEN2)
        put_many(conn, _changed(fast), when=WHEN2)
        second_ref, second_fast = _snapshot(conn, "eqr-"), _snapshot(conn, "eqf-")
    for table in (*[t.name for t in ALL_TABLES if t.name != "search_number"], "consent_fact", "consent_link"):
        # (no served type has a number parameter in R4)
        assert first_ref[table], f"the samples must produce {table} rows"
    for key in first_ref:
        assert first_fast[key] == first_ref[key], key
        assert second_fast[key] == second_ref[key], key
    assert second_ref != first_ref


def _extract_all(rtype: str, res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Reference extraction: every parameter of the type evaluated, nothing skipped."""
    from exchange.search.registry import REGISTRY

    out: dict[str, list[dict[str, Any]]] = {}
    for sp in REGISTRY.params_for(rtype):
        fn = sp.fn_for(rtype)
        if fn is None:
            continue
        if sp.type == "composite":
            comps = REGISTRY.components_for(sp, rtype)
            for grp, item in enumerate(fn(res), start=1):
                parts = [[r for r in indexer._rows_for(c.type, c.fn(item)) if not r.pop("_oftype", False)]
                         for c in comps]
                if all(parts):
                    for i, (c, rows) in enumerate(zip(comps, parts, strict=True)):
                        out.setdefault(c.type, []).extend({**r, "param": f"{sp.code}${i}", "grp": grp} for r in rows)
            continue
        vals = fn(res)
        for r in indexer._rows_for(sp.type, vals) if vals else []:
            r["param"] = sp.code + ":of-type" if r.pop("_oftype", False) else sp.code
            r["grp"] = 0
            out.setdefault(sp.type, []).append(r)
    return out


def _canon(by_type: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    return {t: sorted(repr(sorted(r.items())) for r in rows) for t, rows in by_type.items() if rows}


def test_extract_equals_evaluating_every_parameter() -> None:
    for res in _samples():
        got = indexer.extract(res["resourceType"], copy.deepcopy(res))
        assert _canon(got) == _canon(_extract_all(res["resourceType"], res)), res["id"]


def _index_rows(conn) -> dict[str, Any]:  # noqa: ANN001
    out: dict[str, Any] = {}
    for table in (*ALL_TABLES, consent_fact, consent_link):
        cols = [c for c in table.columns if c.name != "id"]
        out[table.name] = _sorted(tuple(_plain(v) for v in row) for row in conn.execute(select(*cols)))
    return out


@pytest.mark.parametrize("feed", ["community-samples", "bench-synthetic"])
def test_pipeline_ingest_rows_equal_reference_reindex(engine, settings, tmp_path, feed) -> None:  # noqa: ANN001
    from adapters.pipeline import ingest
    from adapters.registry import load

    with write_tx(engine) as conn:  # start from an empty record
        for table in (*ALL_TABLES, consent_fact, consent_link):
            conn.execute(delete(table))
        conn.execute(delete(rv))
        conn.execute(delete(rc))
    if feed == "community-samples":
        folder = ROOT / "adapters" / "community" / "samples"
    else:
        from bench.ingest import write_feed

        folder = tmp_path / "feed"
        write_feed(folder, 12, contacts_per_patient=3)
    report = ingest(engine, settings, load("community"), [folder])
    assert report.created > 10 and not report.rejected, report.to_dict()
    with engine.connect() as conn:
        fast = _index_rows(conn)
    assert all(fast[t] for t in ("search_token", "search_string", "search_date", "search_reference",
                                 "consent_fact", "consent_link"))
    indexer.reindex(engine)
    with write_tx(engine) as conn:
        reindex_facts(conn)
    with engine.connect() as conn:
        reference = _index_rows(conn)
    for name in reference:
        assert fast[name] == reference[name], name
