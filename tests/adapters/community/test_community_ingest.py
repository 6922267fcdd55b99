"""The community extract through the adapter pipeline, on SQLite and PostgreSQL: codes
translated through the ConceptMap, an idempotent re-run, and one person's community and
social care records meeting in one shared Patient. Tests run in order (shared database).
"""

from __future__ import annotations

from pathlib import Path

from adapters.community import CommunityAdapter
from adapters.identity import shared_patient_id, stored_id
from adapters.pipeline import ingest
from adapters.social_care import SocialCareAdapter
from exchange.repository.store import read_current

ROOT = Path(__file__).resolve().parents[3] / "adapters"
SAMPLES = ROOT / "community" / "samples"
SS = "RW4"
JOAN = shared_patient_id("9990000425")
PETER = shared_patient_id("9990000441")


def current(engine, rtype: str, rid: str) -> dict | None:  # noqa: ANN001
    with engine.connect() as conn:
        stored = read_current(conn, rtype, rid)
    return None if stored is None or stored.deleted else stored.data


def test_weekly_extract_loads_with_local_codes_translated(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, CommunityAdapter(), [SAMPLES])
    counts = report.counts()
    assert counts["rejected"] == 0, [p.to_dict() for p in report.problems]
    assert counts["unmatched"] == 1  # Renée Dubois has no NHS number
    assert not [p for p in report.problems if p.kind == "codemap"]
    waterlow = current(engine, "Observation", stored_id(SS, "OBS95000", "Observation"))
    codings = [(c["system"], c["code"]) for c in waterlow["code"]["coding"]]
    assert codings[0] == ("http://snomed.info/sct", "278897004")
    assert ("https://exchange.example.nhs.uk/CodeSystem/community/observation-code", "WATERLOW") in codings
    assert waterlow["subject"]["reference"] == f"Patient/{JOAN}"
    encounter = current(engine, "Encounter", stored_id(SS, "CON80300", "Encounter"))
    assert encounter["serviceProvider"]["identifier"]["value"] == "RW4"
    assert encounter["subject"]["reference"] == f"Patient/{PETER}"
    dnacpr = current(engine, "Flag", stored_id(SS, "EPC1031-cpr", "Flag"))
    assert dnacpr["status"] == "inactive" and dnacpr["subject"]["reference"] == f"Patient/{PETER}"
    patient = current(engine, "Patient", JOAN)
    assert patient["generalPractitioner"][0]["identifier"]["value"] == "N82001"


def test_rerun_changes_nothing(engine, settings) -> None:  # noqa: ANN001
    counts = ingest(engine, settings, CommunityAdapter(), [SAMPLES]).counts()
    assert (counts["created"], counts["updated"], counts["deleted"], counts["rejected"]) == (0, 0, 0, 0)
    assert counts["unchanged"] >= 44


def test_social_care_and_community_meet_in_one_patient(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, SocialCareAdapter(), [ROOT / "social_care" / "samples"])
    assert report.counts()["rejected"] == 0
    social_lpa = current(engine, "Flag", stored_id("LA1", "CT800-lpa", "Flag"))
    community_lpa = current(engine, "Flag", stored_id(SS, "EPC1000-lpa", "Flag"))
    assert social_lpa["subject"] == community_lpa["subject"] == {"reference": f"Patient/{JOAN}"}
    sources = {t["code"] for res in (social_lpa, community_lpa) for t in res["meta"]["tag"]
               if t["system"].endswith("source-system")}
    assert sources == {"LA1", "RW4"}
