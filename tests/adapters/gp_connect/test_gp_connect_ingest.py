"""GP Connect records through the pipeline on SQLite and PostgreSQL: idempotent re-run."""

from __future__ import annotations

from pathlib import Path

from adapters.gp_connect import GpConnectAdapter
from adapters.identity import shared_patient_id, stored_id
from adapters.pipeline import ingest
from exchange.repository.store import read_current

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "gp_connect" / "samples"


def test_practice_records_ingest_and_rerun_is_a_no_op(engine, settings) -> None:  # noqa: ANN001
    files = [SAMPLES / "structured-record-whitfield.json", SAMPLES / "structured-record-nolan.json"]
    report = ingest(engine, settings, GpConnectAdapter(), files, source_system="N82001")
    assert report.rejected == 0, [p.to_dict() for p in report.problems if p.severity == "error"]
    assert report.created >= 30
    with engine.connect() as conn:
        joan = read_current(conn, "Patient", shared_patient_id("9990000425")).data
        flag = read_current(conn, "Flag", stored_id("N82001", "O-9002", "Flag")).data
    assert any(g.get("identifier", {}).get("value") == "N82001" for g in joan["generalPractitioner"])
    assert flag["subject"]["reference"] == f"Patient/{joan['id']}"
    assert flag["code"]["coding"][0]["code"] == "304253006"
    again = ingest(engine, settings, GpConnectAdapter(), files, source_system="N82001")
    assert (again.created, again.updated, again.rejected) == (0, 0, 0)
    other = ingest(engine, settings, GpConnectAdapter(), [SAMPLES / "structured-record-ohare.json"],
                   source_system="N82001")
    assert other.rejected == other.read  # O'Hare's practice is N82002: refused, not misfiled


def test_defective_record_is_reported_with_its_place_and_the_rest_goes_in(engine, settings, tmp_path) -> None:  # noqa: ANN001
    import json

    bundle = json.loads((SAMPLES / "structured-record-ohare.json").read_text())
    bundle["entry"][3]["resource"]["assertedDate"] = "yesterday"  # the allergy
    feed = tmp_path / "ohare-defect.json"
    feed.write_text(json.dumps(bundle))
    report = ingest(engine, settings, GpConnectAdapter(), [feed], source_system="N82002")
    errors = [p for p in report.problems if p.severity == "error"]
    assert len(errors) == 1 and report.rejected == 1
    assert errors[0].location.detail == "Bundle.entry[3] AllergyIntolerance/allergy-1"
    assert errors[0].element == "AllergyIntolerance.assertedDate"
    assert report.created >= 15
