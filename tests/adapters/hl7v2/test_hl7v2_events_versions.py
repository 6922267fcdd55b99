"""Stored results, on SQLite and PostgreSQL, for the ADT events and HL7 v2 versions the
sample feed does not exercise (issue 9, gaps #2 and #3): A05 pre-admit, A12 cancel
transfer (HL7 v2.5.1 section 3.3.12), A34 merge patient information (section 3.3.34),
a v2.3 ADT whose PID-3 carries the NHS number, and a v2.5.1 ORU^R01."""

from __future__ import annotations

from pathlib import Path

from adapters.hl7v2 import Hl7v2Adapter
from adapters.identity import shared_patient_id, stored_id
from adapters.pipeline import ingest
from exchange.repository.store import read_current

HEAD = "MSH|^~\\&|PAS|REM|EXCHANGE|CITYICR|{ts}||ADT^{ev}|{cid}|P|{ver}\nEVN|{ev}|{ts}\n"


def _pv1(cls: str, loc: str, visit: str, admit: str, *, prior: str = "") -> str:
    # PV1-2 class, PV1-3 location, PV1-6 prior location, PV1-19 visit, PV1-44 admit
    return (f"PV1|1|{cls}|{loc}|||{prior}|C5678901^PRICE^HELEN^^^DR^^^GMC||||||||||||"
            f"{visit}^^^REM^VN" + "|" * 25 + admit + "\n")


def _feed(tmp_path: Path, name: str, *messages: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(messages))
    return path


def _ingest(engine, settings, path: Path, source: str = "REM"):  # noqa: ANN001, ANN202
    report = ingest(engine, settings, Hl7v2Adapter(), [path], source_system=source)
    assert report.rejected == 0, [p.to_dict() for p in report.problems if p.severity == "error"]
    return report


def _current(engine, rtype: str, local: str, source: str = "REM") -> dict | None:  # noqa: ANN001
    with engine.connect() as conn:
        cur = read_current(conn, rtype, stored_id(source, local, rtype))
    return None if cur is None or cur.deleted else cur.data


def _shared(engine, nhs: str) -> dict:  # noqa: ANN001
    with engine.connect() as conn:
        cur = read_current(conn, "Patient", shared_patient_id(nhs))
    assert cur is not None and not cur.deleted, f"no shared Patient for {nhs}"
    return cur.data


# -- gaps #2: A05, A12, A34 ------------------------------------------------------------

PID_A05 = "PID|1||9990000123^^^NHS^NH~RM8200001^^^REM^MR||PREADMIT^PAULA||19500505|F\n"


def test_a05_pre_admit_is_a_planned_encounter_that_the_a01_admits(engine, settings, tmp_path) -> None:  # noqa: ANN001
    pre = (HEAD.format(ts="20261120090000", ev="A05", cid="EV-A05", ver="2.4") + PID_A05
           + _pv1("P", "SAU^^^REM", "V820005", "20261125080000"))
    _ingest(engine, settings, _feed(tmp_path, "a05.hl7", pre))
    enc = _current(engine, "Encounter", "enc-V820005")
    assert enc["status"] == "planned"
    assert enc["class"]["code"] == "PRENC"
    assert enc["period"] == {"start": "2026-11-25T08:00:00+00:00"}  # PV1-44: expected admission
    assert enc["subject"]["reference"] == f"Patient/{_shared(engine, '9990000123')['id']}"
    admit = (HEAD.format(ts="20261125081000", ev="A01", cid="EV-A05-A01", ver="2.4") + PID_A05
             + _pv1("I", "W9^B1^1^REM", "V820005", "20261125080000"))
    _ingest(engine, settings, _feed(tmp_path, "a05-a01.hl7", admit))
    admitted = _current(engine, "Encounter", "enc-V820005")
    assert admitted["id"] == enc["id"]  # the same visit, now in progress
    assert admitted["status"] == "in-progress" and admitted["class"]["code"] == "IMP"


PID_A12 = "PID|1||9990000131^^^NHS^NH~RM8200002^^^REM^MR||MOVER^MARK||19470707|M\n"


def _locations(enc: dict) -> list[tuple[str, str]]:
    return [(loc["location"]["display"], loc["status"]) for loc in enc.get("location", [])]


def test_a12_cancel_transfer_restores_the_prior_location(engine, settings, tmp_path) -> None:  # noqa: ANN001
    admit = (HEAD.format(ts="20261120080000", ev="A01", cid="EV-A12-1", ver="2.4") + PID_A12
             + _pv1("I", "AMU^BAY1^BED2^REM", "V820012", "20261120080000"))
    transfer = (HEAD.format(ts="20261121090000", ev="A02", cid="EV-A12-2", ver="2.4") + PID_A12
                + _pv1("I", "W7A^BAY3^BED1^REM", "V820012", "20261120080000",
                       prior="AMU^BAY1^BED2^REM"))
    _ingest(engine, settings, _feed(tmp_path, "a12-1.hl7", admit, transfer))
    moved = _current(engine, "Encounter", "enc-V820012")
    assert _locations(moved) == [("W7A, BAY3, BED1 (REM)", "active"),
                                 ("AMU, BAY1, BED2 (REM)", "completed")]
    # A12: PV1-3 is the location restored, PV1-6 the cancelled transfer's destination
    cancel = (HEAD.format(ts="20261121093000", ev="A12", cid="EV-A12-3", ver="2.4") + PID_A12
              + _pv1("I", "AMU^BAY1^BED2^REM", "V820012", "20261120080000",
                     prior="W7A^BAY3^BED1^REM"))
    _ingest(engine, settings, _feed(tmp_path, "a12-2.hl7", cancel))
    back = _current(engine, "Encounter", "enc-V820012")
    assert back["status"] == "in-progress"
    # back where the patient was; the cancelled transfer's ward is not claimed as visited
    assert _locations(back) == [("AMU, BAY1, BED2 (REM)", "active")]
    assert back["period"] == {"start": "2026-11-20T08:00:00+00:00"}


def test_a34_merge_patient_information_links_and_moves_the_record(engine, settings, tmp_path) -> None:  # noqa: ANN001
    survivor = "PID|1||9990000158^^^NHS^NH~RM8234001^^^REM^MR||KEEPER^KATE||19600101|F\n"
    duplicate = "PID|1||9990000166^^^NHS^NH~RM8234002^^^REM^MR||KEEPER^CATE||19600101|F\n"
    _ingest(engine, settings, _feed(
        tmp_path, "a34-1.hl7",
        HEAD.format(ts="20261120080000", ev="A28", cid="EV-A34-1", ver="2.4") + survivor,
        HEAD.format(ts="20261120090000", ev="A01", cid="EV-A34-2", ver="2.4") + duplicate
        + _pv1("I", "W2^B1^1^REM", "V820034", "20261120090000")))
    dup_id = _shared(engine, "9990000166")["id"]
    assert _current(engine, "Encounter", "enc-V820034")["subject"]["reference"] == f"Patient/{dup_id}"
    merge = (HEAD.format(ts="20261121100000", ev="A34", cid="EV-A34-3", ver="2.4") + survivor
             + "MRG|RM8234002^^^REM^MR\n")
    _ingest(engine, settings, _feed(tmp_path, "a34-2.hl7", merge))
    kept, gone = _shared(engine, "9990000158"), _shared(engine, "9990000166")
    assert {"other": {"reference": f"Patient/{gone['id']}"}, "type": "replaces"} in kept["link"]
    assert gone["link"] == [{"other": {"reference": f"Patient/{kept['id']}"}, "type": "replaced-by"}]
    assert gone["active"] is False
    # the duplicate's hospital visit now belongs to the surviving person
    enc = _current(engine, "Encounter", "enc-V820034")
    assert enc["subject"]["reference"] == f"Patient/{kept['id']}"


# -- gaps #3: v2.3 and v2.5.1 ----------------------------------------------------------

def test_v23_pid3_nhs_number_maps_to_the_same_shared_patient_as_v24(engine, settings, tmp_path) -> None:  # noqa: ANN001
    nhs = "9990000174"
    v24 = (HEAD.format(ts="20261120080000", ev="A28", cid="EV-V24", ver="2.4")
           + f"PID|1||{nhs}^^^NHS^NH~RM8230001^^^REM^MR||VERSION^VERA||19390303|F\n")
    _ingest(engine, settings, _feed(tmp_path, "v24.hl7", v24))
    # v2.3 as UK PAS systems send it: the NHS number in PID-3 with the assigning
    # authority only (NHS), or with the identifier type only (NH) and spaces
    v23_authority = (
        "MSH|^~\\&|PAS|RBQ|EXCHANGE|CITYICR|20261121080000||ADT^A01|EV-V23-1|P|2.3\n"
        "EVN|A01|20261121080000\n"
        f"PID|1||{nhs}^^^NHS||VERSION^VERA||19390303|F\n"
        + _pv1("I", "CCU^^^RBQ", "V823001", "20261121080000"))
    v23_type = (
        "MSH|^~\\&|PAS|REP|EXCHANGE|CITYICR|20261122080000||ADT^A04|EV-V23-2|P|2.3\n"
        "EVN|A04|20261122080000\n"
        f"PID|1|X1|{nhs[:3]} {nhs[3:6]} {nhs[6:]}^^^^NH||VERSION^VERA||19390303|F\n"
        + _pv1("O", "OPD^^^REP", "V823002", "20261122080000"))
    _ingest(engine, settings, _feed(tmp_path, "v23-a.hl7", v23_authority), source="RBQ")
    _ingest(engine, settings, _feed(tmp_path, "v23-b.hl7", v23_type), source="REP")
    shared = _shared(engine, nhs)
    assert {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs} in shared["identifier"]
    for source, visit in (("RBQ", "V823001"), ("REP", "V823002")):
        enc = _current(engine, "Encounter", f"enc-{visit}", source)
        assert enc is not None, (source, visit)
        assert enc["subject"]["reference"] == f"Patient/{shared['id']}"
    # one shared person: the v2.3 records did not create another Patient for this NHS number
    with engine.connect() as conn:
        from exchange.pipeline.context import RequestContext, Requester  # noqa: PLC0415
        from exchange.search.service import find_rids  # noqa: PLC0415

        ctx = RequestContext(requester=Requester(kind="system", scopes=frozenset({"system/*.rs"})))
        rids = find_rids(conn, ctx, "Patient",
                         [("identifier", f"https://fhir.nhs.uk/Id/nhs-number|{nhs}")])
    assert len(rids) == 1


ORU_251 = (
    "MSH|^~\\&|WINPATH|REM|EXCHANGE|CITYICR|20261120101500+0000||ORU^R01^ORU_R01|LAB251-1|P|"
    "2.5.1|||AL|NE|GBR|UNICODE UTF-8|||LRI_Common_Component^^2.16.840.1.113883.9.16^ISO\n"
    "SFT|Clinisys^L|5.2|WinPath|5.2.1||20260101\n"
    "PID|1||9990000182^^^NHS^NH~RM8251001^^^REM^MR||PARKER^ROSE^^^MS||19520315|F\n"
    "PV1|1|O|OPD^^^REM||||||||||||||||V825101^^^REM^VN\n"
    "ORC|RE|ORD8101^REM|LAB8101^WINPATH||CM\n"
    "OBR|1|ORD8101^REM|LAB8101^WINPATH|26958001^Urea and electrolytes^SCT^UE^U and E^L|||"
    "20261120080000+0000|||||||||C5678901^PRICE^HELEN^^^DR^^^GMC||||||20261120101000+0000||CH|F\n"
    "OBX|1|NM|2823-3^Potassium [Moles/volume] in Serum or Plasma^LN^K^Potassium^L^2.72||5.9|"
    "mmol/L^millimole per liter^UCUM|3.5-5.3|H|||F|||20261120080000+0000|||||"
    "20261120100500+0000||||Liverpool Clinical Laboratories^L^^^^REM&&ODS^FI\n"
    "OBX|2|CWE|664-3^Microscopic observation [Identifier] in Specimen by Gram stain^LN||"
    "260385009^Negative^SCT^^^^20260301||||||F\n"
    "NTE|1||Repeat potassium advised.\n"
    "SPM|1|SP8101&WINPATH||119364003^Serum specimen^SCT|||||||||||||20261120080000+0000\n")


def test_v251_oru_maps_its_results(engine, settings, tmp_path) -> None:  # noqa: ANN001
    report = _ingest(engine, settings, _feed(tmp_path, "oru251.hl7", ORU_251))
    assert any("SPM" in p.reason for p in report.problems if p.severity == "warning")
    pid = _shared(engine, "9990000182")["id"]
    rep = _current(engine, "DiagnosticReport", "rep-LAB8101")
    assert rep is not None
    assert rep["status"] == "final" and rep["code"]["coding"][0]["code"] == "26958001"
    assert rep["subject"]["reference"] == f"Patient/{pid}"
    assert rep["effectiveDateTime"] == "2026-11-20T08:00:00+00:00"
    assert rep["issued"].startswith("2026-11-20T10:10:00")
    assert rep["encounter"]["reference"] == (
        f"Encounter/{stored_id('REM', 'enc-V825101', 'Encounter')}")
    results = [r["reference"] for r in rep["result"]]
    assert len(results) == 2
    potassium = _current(engine, "Observation", "obs-LAB8101-1")
    gram = _current(engine, "Observation", "obs-LAB8101-2")
    assert results == [f"Observation/{potassium['id']}", f"Observation/{gram['id']}"]
    assert potassium["valueQuantity"] == {"value": 5.9, "unit": "millimole per liter",
                                          "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    assert potassium["code"]["coding"][0] == {"system": "http://loinc.org", "code": "2823-3",
                                              "display": "Potassium [Moles/volume] in Serum or Plasma"}
    assert potassium["interpretation"][0]["coding"][0]["code"] == "H"
    assert potassium["referenceRange"][0]["high"]["value"] == 5.3
    assert potassium["status"] == "final" and potassium["subject"]["reference"] == f"Patient/{pid}"
    assert gram["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    assert gram["note"] == [{"text": "Repeat potassium advised."}]
