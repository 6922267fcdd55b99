"""The social care extract through the adapter pipeline, on SQLite and PostgreSQL.

Nightly full extracts: the first night loads, a re-run changes nothing, the next night
ends a service and deletes an alert (a row gone from a full extract), and a night with
a defective row does not take that row for a deletion. The tests run in order and
share the module's database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from adapters.identity import shared_patient_id, stored_id
from adapters.pipeline import ingest
from adapters.social_care import SocialCareAdapter
from exchange.repository.store import read_current

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "social_care" / "samples"
NEXT_NIGHT = SAMPLES / "next-night"
SS = "LA1"


def current(engine, rtype: str, local: str) -> dict | None:  # noqa: ANN001
    with engine.connect() as conn:
        stored = read_current(conn, rtype, stored_id(SS, local, rtype))
    return None if stored is None or stored.deleted else stored.data


def test_first_night_loads_everything(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, SocialCareAdapter(), [SAMPLES])
    counts = report.counts()
    assert counts["rejected"] == 0, [p.to_dict() for p in report.problems]
    assert counts["unmatched"] == 1  # Renée Dubois: no NHS number, never merged on a guess
    assert counts["created"] >= 35
    repeat = [p for p in report.problems if "repeated row" in p.reason]
    assert len(repeat) == 1 and repeat[0].severity == "warning"
    assert repeat[0].location.file == "services.csv" and repeat[0].location.line == 6
    secret = current(engine, "Flag", "AT310")
    assert secret is not None
    assert {s["code"] for s in secret["meta"]["security"]} >= {"R", "social-care"}
    assert secret["subject"]["reference"] == f"Patient/{shared_patient_id('9990000433')}"
    lpa = current(engine, "Flag", "CT800-lpa")
    assert lpa["extension"][0]["valueReference"]["reference"] == (
        f"RelatedPerson/{stored_id(SS, 'CT800', 'RelatedPerson')}"
    )
    episode = current(engine, "EpisodeOfCare", "SV5000")
    assert episode["referralRequest"][0]["reference"] == (
        f"ServiceRequest/{stored_id(SS, 'SV5000', 'ServiceRequest')}"
    )
    assert episode["meta"]["source"].startswith("urn:exchange:source:LA1")


def test_rerun_of_the_same_extract_changes_nothing(engine, settings) -> None:  # noqa: ANN001
    before = current(engine, "EpisodeOfCare", "SV5010")
    report = ingest(engine, settings, SocialCareAdapter(), [SAMPLES])
    counts = report.counts()
    assert (counts["created"], counts["updated"], counts["deleted"], counts["rejected"]) == (0, 0, 0, 0)
    assert counts["unchanged"] >= 35
    assert current(engine, "EpisodeOfCare", "SV5010")["meta"]["versionId"] == before["meta"]["versionId"]


def test_next_night_ends_a_service_and_deletes_a_vanished_alert(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, SocialCareAdapter(), [NEXT_NIGHT])
    counts = report.counts()
    assert counts["rejected"] == 0
    assert counts["deleted"] == 1  # alert AT301 is gone from the full extract
    assert counts["updated"] == 2  # SV5010 EpisodeOfCare + ServiceRequest
    episode = current(engine, "EpisodeOfCare", "SV5010")
    assert episode["status"] == "finished"
    assert episode["period"] == {"start": "2026-11-10", "end": "2026-11-29"}
    gone = current(engine, "Flag", "AT301")
    assert gone is None or gone["status"] == "entered-in-error"
    assert current(engine, "Flag", "AT300")["status"] == "active"


def test_defective_row_is_not_taken_for_a_deletion(engine, settings, tmp_path: Path) -> None:  # noqa: ANN001
    night = tmp_path / "night3"
    shutil.copytree(NEXT_NIGHT, night)
    alerts = night / "alerts.csv"
    lines = alerts.read_bytes().split(b"\r\n")
    lines[1] = lines[1].replace(b"01/09/2026", b"31/09/2026")  # AT300: no such date
    alerts.write_bytes(b"\r\n".join(lines))
    report = ingest(engine, settings, SocialCareAdapter(), [night])
    counts = report.counts()
    assert counts["rejected"] == 1 and counts["deleted"] == 0
    (problem,) = [p for p in report.problems if p.severity == "error"]
    assert (problem.location.file, problem.location.line) == ("alerts.csv", 2)
    assert problem.element == "START_DATE" and problem.source_id == "alert/AT300"
    assert current(engine, "Flag", "AT300")["status"] == "active"
