"""The adapter pipeline end to end with a tiny CSV-ish test adapter (issue 8), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.base import (
    MappingContext,
    MappingError,
    RecordError,
    SourceAdapter,
    SourceLocation,
    SourceRecord,
)
from adapters.identity import nhs_check_digit, shared_patient_id, stored_id
from adapters.pipeline import ingest
from adapters.tables import adapter_unmatched
from exchange.db.tables import resource_current, resource_version
from exchange.repository.store import read_current

NHS = "https://fhir.nhs.uk/Id/nhs-number"


class TinyAdapter(SourceAdapter):
    """Lines ``kind|key|field=value;...`` -> Patient / Observation / Flag."""

    name = "tiny"
    version = "0.1"
    description = "test adapter"
    default_source_system = "TINY1"
    source_kind = "community"
    full_extract = True
    concept_maps = ()

    def __init__(self, fail_after: int | None = None, concept_maps: tuple[str, ...] = ()) -> None:
        self.fail_after = fail_after
        self.concept_maps = concept_maps

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        n = 0
        for path in paths:
            for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                loc = SourceLocation(file=str(path), line=i)
                parts = line.split("|")
                if len(parts) != 3:
                    yield RecordError(loc, "expected kind|key|fields", source_id=None)
                    continue
                if self.fail_after is not None and n >= self.fail_after:
                    raise OSError("disk went away")
                n += 1
                fields = dict(f.split("=", 1) for f in parts[2].split(";") if f)
                yield SourceRecord(source_id=f"{parts[0]}:{parts[1]}", kind=parts[0], data=fields, location=loc)

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        d, key = record.data, record.source_id.split(":", 1)[1]
        if record.kind == "person":
            pat: dict[str, Any] = {"resourceType": "Patient", "id": key,
                                   "identifier": [{"system": "urn:tiny:person", "value": key}],
                                   "name": [{"family": d.get("family"), "given": [d.get("given", "")]}],
                                   "gender": d.get("gender", "unknown"), "birthDate": d.get("dob")}
            if d.get("nhs"):
                pat["identifier"].insert(0, {"system": NHS, "value": d["nhs"]})
            if d.get("postcode"):
                pat["address"] = [{"postalCode": d["postcode"]}]
            return [pat]
        if record.kind == "obs":
            if not d.get("person"):
                raise MappingError("no person for the observation", element="PERSON_ID")
            return [{"resourceType": "Observation", "id": key, "status": "final",
                     "code": {"coding": [{"system": "urn:tiny:codes", "code": d.get("code", "X")}]},
                     "subject": {"reference": f"Patient/{d['person']}"},
                     "valueQuantity": {"value": d.get("value"), "unit": "kg"}}]
        if record.kind == "flag":
            return [{"resourceType": "Flag", "id": key, "status": "active",
                     "code": {"text": d.get("text", "flag")}, "subject": {"reference": f"Patient/{d['person']}"}}]
        if record.kind == "merge":
            ctx.request_merge(survivor=d["survivor"], merged=d["merged"])
            return []
        if record.kind == "cancel":
            ctx.retract(d["type"], d["key"])
            return []
        raise MappingError(f"unknown record kind {record.kind}")


_used: set[str] = set()


def fresh_nhs() -> str:
    """A valid test-range NHS number not used by any other test in this module."""
    for n in range(100000, 999999):
        first = f"998{n:06d}"
        check = nhs_check_digit(first)
        if check is not None and first + str(check) not in _used:
            _used.add(first + str(check))
            return first + str(check)
    raise AssertionError("out of numbers")


def people() -> tuple[list[str], str, str]:
    """Three people: P1 and P3 with NHS numbers (P1 written with spaces), P2 without."""
    n1, n3 = fresh_nhs(), fresh_nhs()
    spaced = f"{n1[:3]} {n1[3:6]} {n1[6:]}"
    lines = [
        f"person|P1|nhs={spaced};family=Whitfield;given=Joan;gender=female;dob=1936-02-11;postcode=L5 6PX",
        "person|P2|family=Dubois;given=Renée;gender=female;dob=1929-12-01;postcode=L17 4JP",
        f"person|P3|nhs={n3};family=O'Hare;given=Dennis;gender=male;dob=1948-07-30;postcode=L3 6JR",
    ]
    return lines, n1, n3


def feed(tmp_path: Path, lines: list[str], name: str = "feed.txt") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def versions(engine) -> int:  # noqa: ANN001
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(resource_version)).scalar_one()


def current(engine, rtype: str, rid: str):  # noqa: ANN001, ANN201
    with engine.connect() as c:
        return read_current(c, rtype, rid)


def obs_lines(n: int, person: str = "P1") -> list[str]:
    return [f"obs|O{i}|person={person};code=W;value={i}.5" for i in range(n)]


def test_defective_feed_reports_each_problem_with_location_and_keeps_good_records(engine, settings, tmp_path):
    PEOPLE, _, n3 = people()
    lines = [*PEOPLE, *obs_lines(3),
             "garbage line",  # 7: unreadable
             "obs|BAD1|code=W;value=1",  # 8: mapping error (no person)
             "obs|BAD2|person=P1;code=W;value=heavy",  # 9: validation error (decimal)
             "obs|BAD3|person=NOBODY;code=W;value=2",  # 10: unknown person
             "obs|OK9|person=P3;code=W;value=70"]
    path = feed(tmp_path, lines)
    report = ingest(engine, settings, TinyAdapter(), [path], source_system="DEFECT")
    assert report.status == "complete"
    assert report.read == 11
    assert report.rejected == 4
    errors = {p.location.line: p for p in report.problems if p.severity == "error"}
    assert set(errors) == {7, 8, 9, 10}
    assert errors[7].kind == "read"
    assert errors[8].kind == "mapping" and errors[8].element == "PERSON_ID"
    assert errors[9].kind == "validation" and "valueQuantity.value" in errors[9].element
    assert errors[10].kind == "reference" and "NOBODY" in errors[10].reason
    assert all(p.location.file == str(path) for p in errors.values())
    ok = current(engine, "Observation", stored_id("DEFECT", "OK9", "Observation"))
    assert ok is not None
    assert ok.data["subject"]["reference"] == f"Patient/{shared_patient_id(n3)}"
    assert current(engine, "Observation", stored_id("DEFECT", "BAD2", "Observation")) is None
    as_json = report.to_dict()
    assert as_json["counts"]["rejected"] == 4
    assert {p["location"]["line"] for p in as_json["problems"] if p["severity"] == "error"} == {7, 8, 9, 10}


def test_meta_source_tag_and_provenance(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    report = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [*PEOPLE, *obs_lines(2)])], source_system="META")
    assert report.created == 5
    obs = current(engine, "Observation", stored_id("META", "O1", "Observation")).data
    assert obs["meta"]["source"] == "urn:exchange:source:META#tiny"
    assert {"system": "https://exchange.example.nhs.uk/source-system", "code": "META",
            "display": "test adapter"} in obs["meta"]["tag"]
    with engine.connect() as c:
        rows = c.execute(select(resource_version.c.content).where(resource_version.c.res_type == "Provenance")).all()
    provs = [json.loads(r.content) for r in rows]
    mine = [p for p in provs if p["agent"][0]["who"]["identifier"]["value"] == "META"]
    # one Provenance per patient concerned, so that consent can show each person's own
    assert report.provenance_written == len(mine) >= 2
    o1 = f"Observation/{stored_id('META', 'O1', 'Observation')}/_history/1"
    with_o1 = [p for p in mine if o1 in {t["reference"] for t in p["target"]}]
    assert len(with_o1) == 1
    subject = obs["subject"]["reference"]
    for t in with_o1[0]["target"]:
        kind, rid = t["reference"].split("/")[:2]
        data = current(engine, kind, rid).data
        assert f"{kind}/{rid}" == subject or data.get("subject", {}).get("reference") == subject
    assert with_o1[0]["activity"]["coding"][0]["code"] == "CREATE"
    assert "tiny 0.1" in with_o1[0]["agent"][1]["who"]["display"]


def test_rerun_is_idempotent_and_a_change_makes_exactly_one_version(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    lines = [*PEOPLE, *obs_lines(30)]
    first = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, lines)], source_system="IDEM", batch_resources=10)
    assert first.created == 33  # 2 shared Patients, 1 provisional Patient, 30 Observations
    before = versions(engine)
    again = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, lines)], source_system="IDEM", batch_resources=10)
    assert (again.created, again.updated, again.provenance_written) == (0, 0, 0)
    assert again.unchanged == 33
    assert versions(engine) == before
    lines[5] = "obs|O2|person=P1;code=W;value=99.5"
    third = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, lines)], source_system="IDEM", batch_resources=10)
    assert (third.created, third.updated, third.provenance_written) == (0, 1, 1)
    assert versions(engine) == before + 2  # the new Observation version + one Provenance
    assert current(engine, "Observation", stored_id("IDEM", "O2", "Observation")).version_id == 2


def test_crash_mid_feed_then_rerun_converges(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    lines = [*PEOPLE, *obs_lines(50)]
    path = feed(tmp_path, lines)
    with pytest.raises(OSError):
        ingest(engine, settings, TinyAdapter(fail_after=27), [path], source_system="CRASH", batch_resources=10)
    with engine.connect() as c:
        stored = c.execute(select(func.count()).select_from(resource_current)
                           .where(resource_current.c.res_type == "Observation",
                                  resource_current.c.res_id.like("crash-%"))).scalar_one()
    # batches of 10 records: two were committed (3 people + 17 observations); the third,
    # interrupted after 7 of its records, left nothing behind
    assert stored == 17
    done = ingest(engine, settings, TinyAdapter(), [path], source_system="CRASH", batch_resources=10)
    assert done.status == "complete"
    assert done.created == 33
    for i in range(50):
        assert current(engine, "Observation", stored_id("CRASH", f"O{i}", "Observation")) is not None
    again = ingest(engine, settings, TinyAdapter(), [path], source_system="CRASH", batch_resources=10)
    assert again.created == again.updated == 0


def test_ingest_records_api_for_in_memory_records(engine, settings, tmp_path):
    from adapters.pipeline import ingest_records

    path = feed(tmp_path, ["person|M1|family=Api;given=Ann;gender=female;dob=1960-06-06",
                           "obs|MO1|person=M1;code=W;value=3"])
    report = ingest_records(engine, settings, TinyAdapter(), TinyAdapter().read([path]), feed="mllp:MSG1",
                            source_system="MEM")
    assert (report.read, report.created, report.feed) == (2, 2, "mllp:MSG1")
    obs = current(engine, "Observation", stored_id("MEM", "MO1", "Observation")).data
    assert obs["subject"]["reference"] == f"Patient/{stored_id('MEM', 'M1', 'Patient')}"


def test_dry_run_writes_nothing(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    before = versions(engine)
    report = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [*PEOPLE, *obs_lines(5)])],
                    source_system="DRY", dry_run=True)
    assert report.created == 8 and report.dry_run
    assert versions(engine) == before
    assert current(engine, "Observation", stored_id("DRY", "O1", "Observation")) is None


def test_unmatched_person_is_queued_not_merged(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    report = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, PEOPLE)], source_system="UNM")
    assert report.unmatched == 1
    renee = current(engine, "Patient", stored_id("UNM", "P2", "Patient"))
    assert renee is not None and renee.data["name"][0]["family"] == "Dubois"
    with engine.connect() as c:
        rows = c.execute(select(adapter_unmatched).where(adapter_unmatched.c.source_system == "UNM")).all()
    assert [(r.local_key, r.status) for r in rows] == [("P2", "open")]
    # the same person without NHS number in another source is NOT merged with her either
    other = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [PEOPLE[1]], "b.txt")], source_system="UNM2")
    assert other.unmatched == 1
    assert current(engine, "Patient", stored_id("UNM2", "P2", "Patient")) is not None


def test_certain_demographic_match_joins_the_shared_patient(engine, settings, tmp_path):
    n1 = fresh_nhs()
    gp = f"person|P1|nhs={n1[:3]} {n1[3:6]} {n1[6:]};family=Quayle;given=Ann;gender=female;dob=1940-01-02;postcode=L5 6PX"
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [gp])], source_system="GPX")
    line = "person|Z9|family=QUAYLE;given=Ann Mary;gender=female;dob=1940-01-02;postcode=l5 6px"
    report = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [line, "flag|F1|person=Z9;text=Key safe"], "c.txt")],
                    source_system="SOC")
    assert report.unmatched == 0
    shared = current(engine, "Patient", shared_patient_id(n1)).data
    values = {(i["system"], i["value"]) for i in shared["identifier"]}
    assert ("urn:tiny:person", "Z9") in values and (NHS, n1) in values  # written with spaces, stored as 10 digits
    assert shared["identifier"][0]["system"] == NHS
    flag = current(engine, "Flag", stored_id("SOC", "F1", "Flag")).data
    assert flag["subject"]["reference"] == f"Patient/{shared_patient_id(n1)}"
    assert current(engine, "Patient", stored_id("SOC", "Z9", "Patient")) is None


def test_merge_links_patients_and_moves_references(engine, settings, tmp_path):
    n = fresh_nhs()
    lines = [f"person|H1|nhs={n};family=Nolan;given=Peter;gender=male;dob=1958-05-19",
             "person|H2|family=Nolan;given=Pete;gender=male;dob=1958-05-19",
             "obs|HO1|person=H2;code=W;value=80"]
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, lines)], source_system="MRG")
    survivor, merged = shared_patient_id(n), stored_id("MRG", "H2", "Patient")
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [*lines, "merge|M1|survivor=H1;merged=H2"])],
           source_system="MRG")
    s, m = current(engine, "Patient", survivor).data, current(engine, "Patient", merged).data
    assert {"other": {"reference": f"Patient/{merged}"}, "type": "replaces"} in s["link"]
    assert m["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert m["active"] is False
    obs = current(engine, "Observation", stored_id("MRG", "HO1", "Observation")).data
    assert obs["subject"]["reference"] == f"Patient/{survivor}"
    # the merged person's later records follow the merge; a re-run changes nothing
    before = versions(engine)
    again = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [*lines, "merge|M1|survivor=H1;merged=H2"])],
                   source_system="MRG")
    assert again.created == again.updated == 0 and versions(engine) == before


def test_retraction_and_full_extract_deletion(engine, settings, tmp_path):
    PEOPLE, _, _ = people()
    lines = [*PEOPLE, *obs_lines(3), "flag|F1|person=P1;text=Lives alone", "flag|F2|person=P1;text=Key safe"]
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, lines)], source_system="DEL")
    # O0 retracted explicitly; F2 and O1 disappear from the next full extract
    nxt = [*PEOPLE, "obs|O0|person=P1;code=W;value=0.5", "obs|O2|person=P1;code=W;value=2.5",
           "flag|F1|person=P1;text=Lives alone", "cancel|C1|type=Observation;key=O0"]
    report = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, nxt)], source_system="DEL")
    assert report.deleted == 3
    assert current(engine, "Observation", stored_id("DEL", "O0", "Observation")).data["status"] == "entered-in-error"
    assert current(engine, "Observation", stored_id("DEL", "O1", "Observation")).data["status"] == "entered-in-error"
    assert current(engine, "Flag", stored_id("DEL", "F2", "Flag")).data["status"] == "entered-in-error"
    assert current(engine, "Flag", stored_id("DEL", "F1", "Flag")).data["status"] == "active"
    with engine.connect() as c:
        rows = c.execute(select(resource_version.c.content).where(resource_version.c.res_type == "Provenance")).all()
    deletes = [json.loads(r.content) for r in rows]
    deletes = [p for p in deletes if p["activity"]["coding"][0]["code"] == "DELETE"
               and p["agent"][0]["who"]["identifier"]["value"] == "DEL"]
    assert deletes and sum(len(p["target"]) for p in deletes) == 3


def test_code_mapping_keeps_original_and_reports_unmapped(engine, settings, tmp_path):
    cm = {"resourceType": "ConceptMap", "url": "urn:tiny:cm", "status": "active",
          "group": [{"source": "urn:tiny:codes", "target": "http://snomed.info/sct",
                     "element": [{"code": "W", "target": [{"code": "27113001", "display": "Body weight",
                                                           "equivalence": "equivalent"}]}]}]}
    cm_path = tmp_path / "cm.json"
    cm_path.write_text(json.dumps(cm))
    PEOPLE, _, _ = people()
    lines = [PEOPLE[0], "obs|CM1|person=P1;code=W;value=1", "obs|CM2|person=P1;code=Q;value=1"]
    report = ingest(engine, settings, TinyAdapter(concept_maps=(str(cm_path),)), [feed(tmp_path, lines)],
                    source_system="CMAP")
    obs = current(engine, "Observation", stored_id("CMAP", "CM1", "Observation")).data
    assert obs["code"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"},
        {"system": "urn:tiny:codes", "code": "W"},
    ]
    unmapped = [p for p in report.problems if p.kind == "codemap"]
    assert len(unmapped) == 1 and "urn:tiny:codes|Q" in unmapped[0].reason and unmapped[0].location.line == 3


def test_unmatched_person_gaining_an_nhs_number_is_merged_into_the_shared_patient(engine, settings, tmp_path):
    n = fresh_nhs()
    gp = f"person|G1|nhs={n};family=Lamb;given=Iris;gender=female;dob=1931-03-04;postcode=L8 1AA"
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [gp], "gp.txt")], source_system="GPL")
    before = ["person|S1|family=Lamb;given=Iris;gender=female;dob=1931-03-04",  # no postcode: not certain
              "flag|SF1|person=S1;text=Key safe"]
    first = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, before, "s1.txt")], source_system="SCL")
    provisional, shared = stored_id("SCL", "S1", "Patient"), shared_patient_id(n)
    assert first.unmatched == 1
    assert current(engine, "Flag", stored_id("SCL", "SF1", "Flag")).data["subject"]["reference"] == f"Patient/{provisional}"
    after = [f"person|S1|nhs={n};family=Lamb;given=Iris;gender=female;dob=1931-03-04", before[1]]
    second = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, after, "s2.txt")], source_system="SCL")
    assert second.unmatched == 0
    assert current(engine, "Flag", stored_id("SCL", "SF1", "Flag")).data["subject"]["reference"] == f"Patient/{shared}"
    old = current(engine, "Patient", provisional).data
    assert old["link"] == [{"other": {"reference": f"Patient/{shared}"}, "type": "replaced-by"}] and old["active"] is False
    with engine.connect() as c:
        row = c.execute(select(adapter_unmatched).where(adapter_unmatched.c.source_system == "SCL")).one()
    assert (row.status, row.resolved_to) == ("resolved", shared)


def test_reviewer_resolves_an_unmatched_entry(engine, settings, tmp_path):
    from adapters.unmatched import list_entries, resolve_entry
    from exchange.db.engine import write_tx

    n = fresh_nhs()
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [
        f"person|R1|nhs={n};family=Rees;given=Owen;gender=male;dob=1944-04-04;postcode=L9 9ZZ"], "r.txt")],
        source_system="REVGP")
    ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [
        "person|X1|family=Rees;given=O;gender=male;dob=1944-04-04", "obs|XO|person=X1;code=W;value=1"], "x.txt")],
        source_system="REVSC")
    with engine.connect() as c:
        (entry,) = [e for e in list_entries(c) if e["sourceSystem"] == "REVSC"]
    with write_tx(engine) as c:
        out = resolve_entry(c, entry["id"], shared_patient_id(n), settings=settings)
    assert out["moved"] == 1
    obs = current(engine, "Observation", stored_id("REVSC", "XO", "Observation")).data
    assert obs["subject"]["reference"] == f"Patient/{shared_patient_id(n)}"
    shared = current(engine, "Patient", shared_patient_id(n)).data
    assert ("urn:tiny:person", "X1") in {(i["system"], i["value"]) for i in shared["identifier"]}
    with engine.connect() as c:
        assert [e for e in list_entries(c) if e["sourceSystem"] == "REVSC"] == []
    # the source's next run keeps the reviewer's decision and changes nothing
    again = ingest(engine, settings, TinyAdapter(), [feed(tmp_path, [
        "person|X1|family=Rees;given=O;gender=male;dob=1944-04-04", "obs|XO|person=X1;code=W;value=1"], "x.txt")],
        source_system="REVSC")
    assert (again.created, again.updated, again.unmatched) == (0, 0, 0)
