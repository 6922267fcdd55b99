"""HL7 v2 -> FHIR R4 mapping on the UK sample feed and the public samples (no database)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import MappingContext, MappingError, RecordError, SourceRecord
from adapters.hl7v2 import Hl7v2Adapter
from adapters.hl7v2.adapter import record_from_text

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "hl7v2" / "samples"
PUBLIC = Path("/work/shared/samples/hl7v2")


def _records() -> dict[str, SourceRecord]:
    out = {}
    for rec in Hl7v2Adapter().read([SAMPLES]):
        assert isinstance(rec, SourceRecord), rec
        out[rec.location.message_id] = rec
    return out


def _map(rec: SourceRecord, ss: str = "REM") -> tuple[list[dict], MappingContext]:
    ctx = MappingContext(ss, "test")
    res = Hl7v2Adapter().map(rec, ctx)
    for r in res:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
    return res, ctx


def _one(res: list[dict], rtype: str) -> dict:
    found = [r for r in res if r["resourceType"] == rtype]
    assert len(found) == 1, [r["resourceType"] for r in res]
    return found[0]


def test_uk_feed_every_message_maps_to_valid_r4() -> None:
    recs = _records()
    assert len(recs) == 15
    for rec in recs.values():
        _map(rec)


def test_admission_patient_encounter_and_trust() -> None:
    res, _ = _map(_records()["REM000101"])
    pat = _one(res, "Patient")
    assert {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000425"} in pat["identifier"]
    assert pat["name"][0]["family"] == "WHITFIELD" and pat["birthDate"] == "1936-02-11"
    assert pat["generalPractitioner"][0]["identifier"]["value"] == "N82001"
    enc = _one(res, "Encounter")
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["period"] == {"start": "2026-11-10T09:15:00+00:00"}
    assert enc["serviceProvider"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "REM"}
    assert enc["subject"] == {"reference": f"Patient/{pat['id']}"}
    org = [r for r in res if r["resourceType"] == "Organization" and r["id"] == "org-REM"][0]
    assert org["name"] == "Liverpool University Hospitals NHS Foundation Trust"


def test_hospital_for_cpr_decision_becomes_flag() -> None:
    res, _ = _map(_records()["REM000102"])
    flag = _one(res, "Flag")
    assert flag["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "450475007",
                                         "display": "For attempted cardiopulmonary resuscitation"}
    assert flag["status"] == "active"
    assert flag["period"]["start"] == "2026-11-12T14:30:00+00:00"
    assert flag["author"]["reference"] == "Practitioner/prac-C4567890"
    obs = _one(res, "Observation")
    assert obs["note"][0]["text"].startswith("Discussed with patient")


def test_transfer_discharge_and_cancelled_discharge() -> None:
    recs = _records()
    a02 = _one(_map(recs["REM000202"])[0], "Encounter")
    assert [loc["status"] for loc in a02["location"]] == ["active", "completed"]
    a03 = _one(_map(recs["REM000204"])[0], "Encounter")
    assert a03["status"] == "finished" and a03["period"]["end"] == "2026-11-08T15:00:00+00:00"
    a13 = _one(_map(recs["REM000205"])[0], "Encounter")
    assert a13["id"] == a03["id"] and a13["status"] == "in-progress" and "end" not in a13["period"]


def test_cancel_admit_retracts_the_encounter() -> None:
    res, ctx = _map(_records()["REM000302"])
    assert _one(res, "Encounter")["status"] == "entered-in-error"
    assert [(r.resource_type, r.local_key) for r in ctx.retractions] == [("Encounter", "enc-V300009")]


def test_results_report_and_observations() -> None:
    res, _ = _map(_records()["REM000203"])
    rep = _one(res, "DiagnosticReport")
    obs = [r for r in res if r["resourceType"] == "Observation"]
    assert rep["status"] == "final" and len(rep["result"]) == 4 == len(obs)
    potassium = obs[1]
    assert potassium["valueQuantity"] == {"value": 5.4, "unit": "mmol/L",
                                          "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    assert potassium["interpretation"][0]["coding"][0]["code"] == "H"
    assert potassium["referenceRange"][0]["high"]["value"] == 5.3
    egfr = obs[3]
    assert egfr["valueQuantity"]["comparator"] == "<" and egfr["valueQuantity"]["value"] == 38


def test_discharge_summary_document() -> None:
    res, _ = _map(_records()["REM000105"])
    doc = _one(res, "DocumentReference")
    assert doc["type"]["coding"][0]["code"] == "373942005"
    assert doc["docStatus"] == "final" and doc["status"] == "current"
    text = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    assert text.startswith("Discharge summary") and "for attempted CPR" in text
    assert doc["context"]["encounter"][0]["reference"] == "Encounter/enc-V100001"


def test_merge_requests_pipeline_merge() -> None:
    rec = record_from_text("MSH|^~\\&|PAS|REM|X|Y|20261101||ADT^A40^ADT_A39|M1|P|2.4\r"
                           "EVN|A40|20261101\rPID|1||RM1^^^REM^MR~9990000425^^^NHS^NH\r"
                           "MRG|RM9^^^REM^MR", "t")
    res, ctx = _map(rec)
    assert [r["id"] for r in res if r["resourceType"] == "Patient"] == ["pat-RM1"]
    assert [(m.survivor, m.merged) for m in ctx.merges] == [("pat-RM1", "pat-RM9")]


@pytest.mark.parametrize("text, element", [
    ("MSH|^~\\&|PAS|REM|X|Y|1||ADT^A01|M2|P|2.4\rEVN|A01\rPV1|1|I", "PID"),
    ("MSH|^~\\&|PAS|REM|X|Y|1||ADT^A01|M3|P|2.4\rPID|1||\rPV1|1|I", "PID-3"),
    ("MSH|^~\\&|PAS|REM|X|Y|1||ADT^A29|M4|P|2.4\rPID|1||RM1^^^REM^MR", "MSH-9"),
    ("MSH|^~\\&|PAS|REM|X|Y|1||SIU^S12|M5|P|2.4\rPID|1||RM1^^^REM^MR", "MSH-9"),
    ("MSH|^~\\&|PAS|REM|X|Y|1||ORU^R01|M6|P|2.4\rPID|1||RM1^^^REM^MR\rOBR|1|||", "OBR-4"),
    ("MSH|^~\\&|PAS|REM|X|Y|1||MDM^T02|M7|P|2.4\rPID|1||RM1^^^REM^MR\rTXA|1|DS|TX", "OBX-5"),
])
def test_defective_messages_are_rejected_with_the_element(text: str, element: str) -> None:
    rec = record_from_text(text, "defects.hl7", 7)
    assert isinstance(rec, SourceRecord)
    with pytest.raises(MappingError) as err:
        Hl7v2Adapter().map(rec, MappingContext("REM", "t"))
    assert err.value.element == element


def test_unparseable_message_reports_file_line_and_control_id() -> None:
    rec = record_from_text("MSH|^~\\&|PAS|REM|X|Y|1||ADT^A01|M8|P|2.4\rPID|1\r?? broken", "f.hl7", 40)
    assert isinstance(rec, RecordError)
    assert rec.location.file == "f.hl7" and rec.location.line == 42
    assert rec.location.message_id == "M8" and "malformed segment" in rec.reason


@pytest.mark.skipif(not PUBLIC.is_dir(), reason="shared samples not present")
def test_every_public_sample_is_accepted_or_rejected_clearly() -> None:
    outcomes = {}
    for rec in Hl7v2Adapter().read([PUBLIC]):
        name = Path(rec.location.file).name
        if isinstance(rec, RecordError):
            outcomes[name] = ("error", rec.reason)
            continue
        try:
            _map(rec, "hl7v2")
            outcomes[name] = ("ok", "")
        except MappingError as exc:
            assert exc.reason and exc.element
            outcomes[name] = ("rejected", exc.reason)
    assert len(outcomes) == len(list(PUBLIC.glob("*.hl7")))
    assert outcomes["ADT-A29-01.hl7"][0] == "rejected"
    assert outcomes["ADT-A01-01.hl7"][0] == "ok" and outcomes["LAB-ORU-1.hl7"][0] == "ok"
    assert outcomes["MDM-T02-01.hl7"] == ("rejected",
                                          "the document has no content (no OBX-5 text or encapsulated data)")


def test_a08_without_pv1_updates_the_patient_only() -> None:
    rec = record_from_text("MSH|^~\\&|PAS|REM|X|Y|20261201||ADT^A08|U1|P|2.4\r"
                           "PID|1||9990000425^^^NHS^NH~RM1234567^^^REM^MR||WHITFIELD^JOAN", "t")
    res, ctx = _map(rec)
    assert [r["resourceType"] for r in res] == ["Patient", "Organization"]
    assert "no visit" in ctx.warnings[0]


def _discharge(admit: str, discharge: str) -> SourceRecord:
    pv1 = "PV1|1|I|W1" + "|" * 16 + "V1" + "|" * 25 + admit + "|" + discharge
    rec = record_from_text("MSH|^~\\&|PAS|REM|X|Y|20261201||ADT^A03|E1|P|2.4\r"
                           "PID|1||RM1^^^REM^MR\r" + pv1, "t")
    assert isinstance(rec, SourceRecord)
    return rec


def test_discharge_before_admission_is_not_mapped_as_end() -> None:
    res, _ = _map(_discharge("20261201100000+0100", "20261201093000+0000"))
    assert _one(res, "Encounter")["period"] == {"start": "2026-12-01T10:00:00+01:00",
                                                "end": "2026-12-01T09:30:00+00:00"}
    res2, ctx2 = _map(_discharge("20261201100000+0000", "20261201093000+0000"))
    assert "end" not in _one(res2, "Encounter")["period"]
    assert any("before PV1-44" in w for w in ctx2.warnings)
