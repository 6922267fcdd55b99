"""Pure mapping tests of the social care adapter on its sample extract (no database).

Every mapped resource must validate as FHIR R4 (fhir.resources R4B models) and carry
the social-care record-category tag; field-level checks follow
docs/adapters/social-care.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import MappingContext, RecordError, SourceRecord
from adapters.social_care import SocialCareAdapter
from adapters.social_care.terms import COMPARTMENT, CONFIDENTIALITY, RECORD_CATEGORY
from exchange.operations.eol_classify import attorney_of, classify

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "social_care" / "samples"


def run(paths: list[Path]) -> tuple[dict[tuple[str, str], dict[str, Any]], list[RecordError], dict[str, list[str]]]:
    adapter = SocialCareAdapter()
    ctx = MappingContext(source_system=adapter.default_source_system, feed="test")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    errors: list[RecordError] = []
    warnings: dict[str, list[str]] = {}
    for item in adapter.read(paths):
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        assert isinstance(item, SourceRecord)
        before = len(ctx.warnings)
        for res in adapter.map(item, ctx):
            out[(res["resourceType"], res["id"])] = res
        if len(ctx.warnings) > before:
            warnings[item.source_id] = ctx.warnings[before:]
    return out, errors, warnings


@pytest.fixture(scope="module")
def mapped() -> tuple[dict[tuple[str, str], dict[str, Any]], list[RecordError], dict[str, list[str]]]:
    return run([SAMPLES])


def test_every_resource_is_valid_r4_and_tagged_social_care(mapped) -> None:
    resources, errors, _ = mapped
    assert errors == []
    assert len(resources) >= 35
    for res in resources.values():
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        tags = {(t["system"], t["code"]) for t in res["meta"]["tag"]}
        assert (RECORD_CATEGORY, "social-care") in tags


def test_patients_nhs_numbers_and_windows_1252_names(mapped) -> None:
    resources, _, _ = mapped
    joan = resources[("Patient", "LAS100200")]
    nhs = [i["value"] for i in joan["identifier"] if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"]
    assert nhs == ["9990000425"]  # written "999 000 0425" in the extract
    assert joan["birthDate"] == "1936-02-11"
    assert joan["gender"] == "female"
    assert joan["address"][0]["postalCode"] == "L5 6PX"
    renee = resources[("Patient", "LAS100202")]
    assert renee["name"][0]["given"] == ["Renée"]  # byte 0xE9 in Windows-1252
    assert not [i for i in renee["identifier"] if i["system"].endswith("nhs-number")]
    assert renee["address"][0]["line"] == ["Flat 3, 9 Aigburth Road"]


def test_service_is_episode_and_request_with_weekly_hours(mapped) -> None:
    resources, _, _ = mapped
    episode = resources[("EpisodeOfCare", "SV5000")]
    request = resources[("ServiceRequest", "SV5000")]
    assert episode["status"] == "active"
    assert episode["period"] == {"start": "2026-09-01"}
    assert episode["referralRequest"] == [{"reference": "ServiceRequest/SV5000"}]
    assert episode["type"][0]["coding"][0]["code"] == "HC"
    ratio = request["quantityRatio"]
    assert ratio["numerator"]["value"] == 10.5 and ratio["numerator"]["code"] == "h"
    assert ratio["denominator"]["code"] == "wk"
    assert request["performer"][0]["identifier"]["value"] == "1-101234567"
    assert request["subject"] == {"reference": "Patient/LAS100200"}


def test_confidential_alert_is_restricted_to_social_care(mapped) -> None:
    resources, _, _ = mapped
    secret = resources[("Flag", "AT310")]
    labels = {(s["system"], s["code"]) for s in secret["meta"]["security"]}
    assert labels == {(CONFIDENTIALITY, "R"), (COMPARTMENT, "social-care")}
    assert secret["code"]["text"] == "Risk to staff: Dog on premises - call ahead"
    assert secret["category"][0]["coding"][0]["code"] == "safety"
    open_alert = resources[("Flag", "AT300")]
    assert "security" not in open_alert["meta"]
    assert open_alert["status"] == "active"


def test_health_and_welfare_lpa_is_a_care_preference(mapped) -> None:
    resources, _, _ = mapped
    karen = resources[("RelatedPerson", "CT800")]
    codes = {c["code"] for r in karen["relationship"] for c in r.get("coding", [])}
    assert {"DAUC", "HPOWATT", "133932002"} <= codes
    flag = resources[("Flag", "CT800-lpa")]
    pref = classify(flag)
    assert pref is not None and pref.kind == "lpa" and pref.record_status == "active"
    assert flag["extension"][0]["valueReference"] == {"reference": "RelatedPerson/CT800"}
    assert attorney_of(karen) is not None
    # a property and financial LPA is not a care preference: no Flag, no attorney role
    marc = resources[("RelatedPerson", "CT820")]
    assert attorney_of(marc) is None
    assert ("Flag", "CT820-lpa") not in resources


def test_mental_capacity_assessment_is_procedure_and_preference(mapped) -> None:
    resources, _, _ = mapped
    proc = resources[("Procedure", "AS7001")]
    assert proc["status"] == "completed"
    assert proc["performer"][0]["actor"] == {"reference": "Practitioner/W001", "display": "Sarah O'Neill"}
    obs = resources[("Observation", "AS7001-capacity")]
    assert obs["valueString"] == "Has capacity for care decisions"
    pref = classify(obs)
    assert pref is not None and pref.kind == "mental_capacity"
    in_progress = resources[("Procedure", "AS7010")]
    assert in_progress["status"] == "in-progress"
    assert ("Observation", "AS7010-capacity") not in resources  # a Care Act assessment


def test_workers_and_allocations(mapped) -> None:
    resources, _, _ = mapped
    role = resources[("PractitionerRole", "W002")]
    assert role["practitioner"] == {"reference": "Practitioner/W002"}
    assert {t["system"] for t in role["telecom"]} == {"phone", "email"}
    team = resources[("CareTeam", "AL910")]
    assert team["name"] == "Hospital Discharge Team"
    assert team["participant"][0]["member"]["reference"] == "Practitioner/W002"
    assert team["subject"] == {"reference": "Patient/LAS100201"}
    assert team["status"] == "active"


def test_repeated_row_maps_identically_and_is_reported_as_info(mapped) -> None:
    _, _, warnings = mapped
    assert warnings["service/SV5001"] == ["info: repeated row (same as line 3); ignored"]


def test_records_carry_their_line_in_the_source() -> None:
    adapter = SocialCareAdapter()
    records = [r for r in adapter.read([SAMPLES]) if isinstance(r, SourceRecord)]
    persons = [r for r in records if r.kind == "person"]
    assert [(r.location.file, r.location.line) for r in persons[:2]] == [
        ("persons.csv", 2),
        ("persons.csv", 3),
    ]
    assert records[0].kind == "worker"  # workers first: allocations name their team
    allocation = next(r for r in records if r.source_id == "allocation/AL900")
    assert allocation.data["_worker"]["TEAM"] == "North Locality Team"
