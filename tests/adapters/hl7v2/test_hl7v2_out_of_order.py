"""A late ADT loses only its visit state, never its clinical content (issue 9, gaps #1).

Through the MLLP inbox (receive -> drain) on SQLite and PostgreSQL: an A01 that
arrives after the visit's A03 leaves the Encounter finished, but its patient, AL1
allergy, DG1 diagnosis and "Not for attempted CPR" OBX (-> Flag) are stored, and the
DNACPR decision is in ``$care-preferences``."""

from __future__ import annotations

from sqlalchemy import select

from adapters.base import MappingContext
from adapters.hl7v2.adapter import map_message, record_from_text
from adapters.hl7v2.inbox import drain, receive
from adapters.hl7v2.tables import hl7v2_inbox
from adapters.identity import shared_patient_id, stored_id
from exchange.db.tables import resource_current
from exchange.repository.store import read_current

NHS_NO = "9990000050"
VISIT = "V710001"
HEAD = "MSH|^~\\&|PAS|REM|EXCHANGE|CITYICR|{ts}||ADT^{ev}^ADT_A01|{cid}|P|2.4\rEVN|{ev}|{ts}\r"
PID = f"PID|1||{NHS_NO}^^^NHS^NH~RM7100001^^^REM^MR||LATEMAN^LUCY^^^MRS||19400101|F\r"
PV1 = ("PV1|1|I|W4B^BAY1^BED1^REM||||C4567890^KHAN^AHMED^^^DR^^^GMC||||||||||||"
       f"{VISIT}^^^REM^VN|||||||||||||||||{{disp}}||||||||20261101080000{{end}}")
LATE_CLINICAL = (
    "\rAL1|1|DA|373270004^Penicillin^SCT|SV|Anaphylaxis|20261101"
    "\rDG1|1||195951007^Acute exacerbation of COPD^SCT|||F"
    "\rOBX|1|CE|RESUS^Resuscitation status^L||450476008^Not for attempted cardiopulmonary "
    "resuscitation^SCT||||||F|||20261101090000||C4567890^KHAN^AHMED^^^DR^^^GMC")


def adt(cid: str, ev: str, ts: str, *, end: str = "", clinical: str = "") -> str:
    pv1 = PV1.format(disp="01" if end else "", end=f"|{end}" if end else "")
    return HEAD.format(ts=ts, ev=ev, cid=cid) + PID + pv1 + clinical


def _current(engine, rtype: str, local: str) -> dict | None:  # noqa: ANN001
    with engine.connect() as conn:
        cur = read_current(conn, rtype, stored_id("REM", local, rtype))
    return None if cur is None or cur.deleted else cur.data


def _inbox(engine, cid: str):  # noqa: ANN001, ANN202
    with engine.connect() as conn:
        return conn.execute(select(hl7v2_inbox).where(hl7v2_inbox.c.control_id == cid)).one()


def test_superseded_mapping_leaves_out_only_the_encounter() -> None:
    msg = record_from_text(adt("MAP-1", "A01", "20261101080000", clinical=LATE_CLINICAL), "t").data
    normal = map_message(msg, MappingContext("REM", "test"))
    ctx = MappingContext("REM", "test")
    late = map_message(msg, ctx, visit_state=False)
    assert {r["resourceType"] for r in normal} - {r["resourceType"] for r in late} == {"Encounter"}
    assert [r for r in normal if r["resourceType"] != "Encounter"] == late
    flag = next(r for r in late if r["resourceType"] == "Flag")
    assert flag["encounter"] == {"reference": f"Encounter/enc-{VISIT}"}
    assert any("visit state superseded" in w for w in ctx.warnings)


def test_superseded_a11_applies_neither_retraction_nor_encounter() -> None:
    msg = record_from_text(adt("MAP-2", "A11", "20261101080000"), "t").data
    ctx = MappingContext("REM", "test")
    res = map_message(msg, ctx, visit_state=False)
    assert {r["resourceType"] for r in res} == {"Patient", "Organization"}
    assert ctx.retractions == []
    assert any("cancellation was not applied" in w for w in ctx.warnings)


def test_late_a01_after_discharge_keeps_allergy_and_dnacpr(engine, settings, client) -> None:  # noqa: ANN001
    admit = receive(engine, adt("LATE-1", "A01", "20261101080000"), source_system="REM")
    drain(engine, settings, source_system="REM")
    discharge = receive(engine, adt("LATE-2", "A03", "20261105120000", end="20261105120000"),
                        source_system="REM")
    drain(engine, settings, source_system="REM")
    enc = _current(engine, "Encounter", f"enc-{VISIT}")
    assert enc["status"] == "finished"
    with engine.connect() as conn:
        before = conn.execute(select(resource_current.c.version_id).where(
            resource_current.c.res_id == enc["id"])).scalar_one()
    # the late A01 (event time before the A03) carries an allergy, a diagnosis and a DNACPR
    late = receive(engine, adt("LATE-3", "A01", "20261101090500", clinical=LATE_CLINICAL),
                   source_system="REM")
    assert all("|AA|" in a for a in (admit, discharge, late))
    drain(engine, settings, source_system="REM")

    row = _inbox(engine, "LATE-3")
    assert row.status == "superseded"
    assert "visit state superseded" in row.detail and "clinical content" in row.detail
    assert "applied" in row.detail
    # the visit is not rolled back
    enc = _current(engine, "Encounter", f"enc-{VISIT}")
    assert enc["status"] == "finished" and enc["period"]["end"].startswith("2026-11-05")
    with engine.connect() as conn:
        after = conn.execute(select(resource_current.c.version_id).where(
            resource_current.c.res_id == enc["id"])).scalar_one()
    assert after == before
    # the clinical content is stored, against the shared patient and the same visit
    pid = shared_patient_id(NHS_NO)
    allergy = _current(engine, "AllergyIntolerance", "alg-pat-RM7100001-373270004")
    assert allergy is not None, "the late message's AL1 was lost"
    assert allergy["code"]["coding"][0]["code"] == "373270004"
    assert allergy["criticality"] == "high"
    assert allergy["patient"]["reference"] == f"Patient/{pid}"
    flag = _current(engine, "Flag", f"obs-enc-{VISIT}-RESUS-20261101090000")
    assert flag is not None, "the late message's DNACPR decision was lost"
    assert flag["code"]["coding"][0]["code"] == "450476008" and flag["status"] == "active"
    assert flag["encounter"]["reference"] == f"Encounter/{enc['id']}"
    cond = _current(engine, "Condition", f"dx-enc-{VISIT}-195951007")
    assert cond is not None and cond["encounter"]["reference"] == f"Encounter/{enc['id']}"
    # and $care-preferences shows the DNACPR as the current resuscitation decision
    doc = client.get(f"/fhir/Patient/{pid}/$care-preferences")
    assert doc.status_code == 200, doc.text
    composition = doc.json()["entry"][0]["resource"]
    resus = next(s for s in composition["section"]
                 if s["code"]["coding"][0]["code"] == "resuscitation-status")
    entry = next((e for e in resus.get("entry", [])
                  if e["reference"].endswith(f"/Flag/{flag['id']}")), None)
    assert entry is not None, resus.get("entry")
    state = next(x["valueCode"] for x in entry["extension"] if x["url"].endswith("-state"))
    assert state == "current"

    # a second drain changes nothing; the superseded message never becomes the visit's state
    assert drain(engine, settings, source_system="REM") == 0
    newer = receive(engine, adt("LATE-4", "A08", "20261102080000"), source_system="REM")
    assert "|AA|" in newer
    drain(engine, settings, source_system="REM")
    assert _inbox(engine, "LATE-4").status == "superseded"  # still older than the A03
    assert _current(engine, "Encounter", f"enc-{VISIT}")["status"] == "finished"


def test_a_superseded_message_that_cannot_be_applied_is_failed_not_hidden(engine, settings, monkeypatch) -> None:  # noqa: ANN001
    import adapters.pipeline as pipeline

    real = pipeline.ingest

    def flaky(engine_, settings_, adapter, paths, **kw):  # noqa: ANN001, ANN003, ANN202
        if any("POISONED" in r.message for r in adapter.rows):
            raise RuntimeError("pipeline bug")
        return real(engine_, settings_, adapter, paths, **kw)

    visit = "V710002"
    first = adt("FAIL-1", "A03", "20261110120000", end="20261110120000").replace(VISIT, visit)
    receive(engine, first, source_system="REM")
    drain(engine, settings, source_system="REM")
    monkeypatch.setattr(pipeline, "ingest", flaky)
    late = adt("FAIL-2", "A01", "20261109080000",
               clinical="\rAL1|1|DA|POISONED^Poison^L").replace(VISIT, visit)
    assert "|AA|" in receive(engine, late, source_system="REM")
    drain(engine, settings, source_system="REM")
    row = _inbox(engine, "FAIL-2")
    assert row.status == "pending" and row.detail is None  # retried, nothing noted yet
    drain(engine, settings, source_system="REM")
    drain(engine, settings, source_system="REM")
    row = _inbox(engine, "FAIL-2")
    assert row.status == "failed" and row.attempts == 3
    assert row.detail.count("visit state superseded") == 1 and "pipeline bug" in row.detail
