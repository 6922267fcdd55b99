"""GP Connect STU3 -> R4 mapping on the sample records and on defective bundles (no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import MappingContext, MappingError, RecordError, SourceRecord
from adapters.gp_connect import GpConnectAdapter

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "gp_connect" / "samples"


def _mapped(path: Path, ss: str = "gp-connect") -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    adapter = GpConnectAdapter()
    for rec in adapter.read([path]):
        assert isinstance(rec, SourceRecord), rec
        for r in adapter.map(rec, MappingContext(ss, "t")):
            get_fhir_model_class(r["resourceType"]).model_validate(r)
            out[(r["resourceType"], r["id"])] = r
    return out


def test_whitfield_maps_faithfully() -> None:
    res = _mapped(SAMPLES / "structured-record-whitfield.json", "N82001")
    pat = res[("Patient", "9990000425")]
    assert pat["generalPractitioner"][0] == {
        "reference": "Organization/N82001",
        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "N82001"},
        "display": "BRECK ROAD SURGERY"}
    assert pat["generalPractitioner"][1] == {"reference": "Practitioner/G8200011",
                                             "display": "Dr Priya SHAH"}
    assert "meta" not in pat  # STU3 profiles are not carried into R4
    allergy = res[("AllergyIntolerance", "A-771")]
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"
    assert allergy["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert allergy["recordedDate"] == "2012-04-02T00:00:00+01:00"
    problem = res[("Condition", "P-102")]
    systems = [c["system"] for c in problem["code"]["coding"]]
    assert systems == ["http://snomed.info/sct", "http://read.info/readv2"]
    assert problem["category"][0]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/condition-category")
    ms = res[("MedicationStatement", "MS-55")]
    assert "taken" not in ms and ms["basedOn"] == [{"reference": "MedicationRequest/MR-55"}]
    mr = res[("MedicationRequest", "MR-55")]
    assert mr["intent"] == "plan"
    assert mr["requester"] == {"reference": "Practitioner/G8200011", "display": "Dr Priya SHAH"}
    med = res[("Medication", "9990000425-med-1")]
    assert {"system": "https://dmd.nhs.uk", "code": "39113611000001102",
            "display": "Salbutamol 100micrograms/dose inhaler CFC free"} in med["code"]["coding"]


def test_not_for_resuscitation_observation_also_becomes_a_flag() -> None:
    res = _mapped(SAMPLES / "structured-record-whitfield.json")
    flag = res[("Flag", "O-9002")]
    assert flag["code"]["coding"][0]["code"] == "304253006"
    assert flag["period"] == {"start": "2026-10-01T12:00:00+01:00"}
    assert flag["author"] == {"reference": "Practitioner/G8200011", "display": "Dr Priya SHAH"}
    assert flag["subject"] == {"reference": "Patient/9990000425"}
    assert ("Observation", "O-9002") in res


@pytest.mark.parametrize("name, nhs, ods", [
    ("structured-record-nolan.json", "9990000441", "N82001"),
    ("structured-record-ohare.json", "9990000433", "N82002"),
])
def test_own_samples_cover_every_section(name: str, nhs: str, ods: str) -> None:
    res = _mapped(SAMPLES / name, ods)
    types = {t for t, _ in res}
    assert {"Patient", "AllergyIntolerance", "Condition", "Medication", "MedicationStatement",
            "MedicationRequest", "Immunization", "Encounter", "Observation", "DiagnosticReport",
            "ServiceRequest", "List"} <= types
    assert res[("Patient", nhs)]["generalPractitioner"][0]["identifier"]["value"] == ods
    imm = next(r for (t, _), r in res.items() if t == "Immunization")
    assert imm["status"] == "completed" and imm["protocolApplied"][0]["doseNumberPositiveInt"] == 1
    sr = next(r for (t, _), r in res.items() if t == "ServiceRequest")
    assert sr["category"][0]["coding"][0]["code"] == "3457005" and sr["status"] == "active"
    enc = next(r for (t, _), r in res.items() if t == "Encounter")
    assert enc["class"]["code"] == "AMB" and enc["serviceProvider"]["reference"] == f"Organization/{ods}"
    problems = [r for (t, _), r in res.items() if t == "Condition"]
    assert all(any(c["code"] == "problem-list-item" for cat in p["category"] for c in cat["coding"])
               for p in problems)


def test_stu3_immunisation_not_given_and_referral_status() -> None:
    bundle = json.loads((SAMPLES / "structured-record-nolan.json").read_text())
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Immunization":
            r["notGiven"] = True
            r["explanation"] = {"reasonNotGiven": [{"text": "patient declined"}]}
        if r["resourceType"] == "ReferralRequest":
            r["status"] = "cancelled"
    adapter = GpConnectAdapter()
    bctx_records = [rec for rec in adapter.read([_write(bundle)])]
    out = {r["resourceType"]: r for rec in bctx_records
           for r in adapter.map(rec, MappingContext("gp-connect", "t"))}
    assert out["Immunization"]["status"] == "not-done"
    assert out["Immunization"]["statusReason"] == {"text": "patient declined"}
    assert out["ServiceRequest"]["status"] == "revoked"


_tmp: list[Path] = []


def _write(bundle: dict) -> Path:
    import tempfile

    f = Path(tempfile.mkdtemp()) / "b.json"
    f.write_text(json.dumps(bundle))
    return f


def test_defects_are_reported_with_their_place(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle",\n "entry": [\n  oops]}')
    (tmp_path / "nopatient.json").write_text('{"resourceType": "Bundle", "entry": []}')
    bundle = json.loads((SAMPLES / "structured-record-whitfield.json").read_text())
    bundle["entry"][4]["resource"]["onsetDateTime"] = "not-a-date"
    bundle["entry"].append({"resource": {"resourceType": "Procedure", "id": "proc-1",
                                         "status": "completed", "subject": {"reference": "Patient/pat-1"}}})
    (tmp_path / "whitfield-bad.json").write_text(json.dumps(bundle))
    adapter = GpConnectAdapter()
    errors, rejected, good = [], [], 0
    for rec in adapter.read([tmp_path]):
        if isinstance(rec, RecordError):
            errors.append(rec)
            continue
        try:
            adapter.map(rec, MappingContext("gp-connect", "t"))
            good += 1
        except MappingError as exc:
            rejected.append((rec.location.detail, exc.element))
    assert {Path(e.location.file).name for e in errors} == {"broken.json", "nopatient.json"}
    broken = next(e for e in errors if e.location.file.endswith("broken.json"))
    assert broken.location.line == 3
    assert ("Bundle.entry[4] Condition/problem-1", "Condition.onsetDateTime") in rejected
    assert ("Bundle.entry[11] Procedure/proc-1", "resourceType") in rejected
    assert good == 10


def test_wrong_practice_for_source_system_is_rejected() -> None:
    adapter = GpConnectAdapter()
    rec = next(iter(adapter.read([SAMPLES / "structured-record-ohare.json"])))
    with pytest.raises(MappingError, match="practice N82002"):
        adapter.map(rec, MappingContext("N82001", "t"))
