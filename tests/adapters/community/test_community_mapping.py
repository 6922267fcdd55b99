"""Pure mapping tests of the community adapter on its sample extract (no database).

Checks follow docs/adapters/community.md; care preferences are cross-checked with the
end-of-life engine's classifier (exchange.operations.eol_classify), which recognises
them by the canonical codes of exchange/operations/eol_codes.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import MappingContext, RecordError, SourceRecord
from adapters.community import CommunityAdapter
from adapters.community.terms import LOCAL_OBSERVATION_SYSTEM, REGISTER_STATUS_URL
from adapters.csvkit.fields import SNOMED
from exchange.operations.eol_classify import attorney_of, classify

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "community" / "samples"


@pytest.fixture(scope="module")
def mapped() -> dict[tuple[str, str], dict[str, Any]]:
    adapter = CommunityAdapter()
    ctx = MappingContext(source_system=adapter.default_source_system, feed="test")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for item in adapter.read([SAMPLES]):
        assert not isinstance(item, RecordError), item
        assert isinstance(item, SourceRecord)
        for res in adapter.map(item, ctx):
            out[(res["resourceType"], res["id"])] = res
    assert ctx.warnings == []
    return out


def test_every_resource_is_valid_r4(mapped) -> None:
    assert len(mapped) == 44
    for res in mapped.values():
        get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_patient_with_registered_practice(mapped) -> None:
    joan = mapped[("Patient", "S1C-40000")]
    assert joan["name"][0] == {"use": "official", "family": "Whitfield", "given": ["Joan"]}
    assert joan["generalPractitioner"][0]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": "N82001",
    }
    assert mapped[("Patient", "S1C-40001")]["name"][0]["family"] == "O'Hare"
    renee = mapped[("Patient", "S1C-40002")]
    assert renee["name"][0]["given"] == ["Renée"]
    assert [i for i in renee["identifier"] if i["system"].endswith("nhs-number")] == []


def test_referral_is_request_and_episode(mapped) -> None:
    request = mapped[("ServiceRequest", "REF60010")]
    assert request["priority"] == "urgent" and request["authoredOn"] == "2026-11-09"
    assert request["requester"] == {"display": "Hospital"}
    episode = mapped[("EpisodeOfCare", "REF60010")]
    assert episode["status"] == "active" and episode["period"] == {"start": "2026-11-09"}
    assert episode["managingOrganization"]["identifier"]["value"] == "RW4"


def test_contact_is_encounter_with_local_time_offset(mapped) -> None:
    winter = mapped[("Encounter", "CON80000")]
    assert winter["period"] == {"start": "2026-11-02T09:30:00+00:00"}
    assert winter["serviceProvider"]["identifier"]["value"] == "RW4"
    assert winter["episodeOfCare"] == [{"reference": "EpisodeOfCare/REF60000"}]
    assert winter["class"]["code"] == "HH" and winter["status"] == "finished"
    assert winter["participant"][0]["individual"]["display"] == "Nurse A. Begum"
    missed = mapped[("Encounter", "CON80102")]
    assert missed["status"] == "cancelled"
    assert [e["valueString"] for e in missed["extension"]] == ["No answer at door", "Did not attend"]


def test_activity_and_observations_find_their_patient_through_the_contact(mapped) -> None:
    proc = mapped[("Procedure", "ACT93000")]
    assert proc["subject"] == {"reference": "Patient/S1C-40003"}
    assert proc["encounter"] == {"reference": "Encounter/CON80300"}
    assert proc["code"]["coding"] == [{"system": SNOMED, "code": "103735009", "display": "Palliative care"}]
    assert proc["performedDateTime"] == "2026-11-05T09:30:00+00:00"
    waterlow = mapped[("Observation", "OBS95000")]
    assert waterlow["code"]["coding"][0]["system"] == LOCAL_OBSERVATION_SYSTEM
    assert waterlow["code"]["coding"][0]["code"] == "WATERLOW"
    assert waterlow["valueQuantity"] == {"value": 16, "unit": "score", "system": "http://unitsofmeasure.org", "code": "{score}"}
    weight = mapped[("Observation", "OBS95001")]
    assert weight["code"]["coding"][0] == {"system": SNOMED, "code": "27113001", "display": "Body weight"}
    assert weight["valueQuantity"]["value"] == 52.4 and weight["valueQuantity"]["code"] == "kg"


def test_dnacpr_flag(mapped) -> None:
    flag = mapped[("Flag", "EPC1000-cpr")]
    assert flag["code"]["coding"][0]["code"] == "450476008"
    assert flag["period"] == {"start": "2026-10-01", "end": "2027-04-01"}
    assert flag["author"] == {"type": "Practitioner", "display": "Dr P Shah (GP)"}
    pref = classify(flag)
    assert pref.kind == "cpr" and pref.cpr == "not-for-cpr" and pref.record_status == "active"


def test_cancelled_decision_is_inactive_with_reason(mapped) -> None:
    flag = mapped[("Flag", "EPC1031-cpr")]
    assert flag["status"] == "inactive"
    assert flag["extension"] == [
        {
            "url": REGISTER_STATUS_URL,
            "valueCoding": {
                "system": "https://exchange.example.nhs.uk/CodeSystem/register-entry-status",
                "code": "cancelled",
                "display": "Cancelled",
            },
        }
    ]
    assert classify(flag).record_status == "cancelled"
    assert classify(mapped[("Flag", "EPC1030-cpr")]).cpr == "for-cpr"
    # a cancelled row that held no ReSPECT form, ADRT or LPA yields none
    assert ("CarePlan", "EPC1031-respect") not in mapped


def test_respect_plan_with_care_priority(mapped) -> None:
    plan = mapped[("CarePlan", "EPC1000-respect")]
    assert plan["category"][0]["coding"][0]["code"] == "1382601000000107"
    assert plan["extension"][0]["valueInteger"] == 3
    assert "priority 3" in plan["activity"][0]["detail"]["description"]
    assert plan["created"] == "2026-10-01T12:00:00+01:00"  # British Summer Time
    assert classify(plan).kind == "respect"


def test_adrt_lpa_places_and_register(mapped) -> None:
    adrt = mapped[("Flag", "EPC1030-adrt")]
    assert adrt["code"]["text"] == "Advance decision to refuse treatment: Refuses artificial ventilation"
    assert classify(adrt).kind == "adrt"
    lpa = mapped[("Flag", "EPC1000-lpa")]
    assert classify(lpa).kind == "lpa"
    attorney = mapped[("RelatedPerson", "EPC1000-lpa")]
    assert lpa["extension"][-1]["valueReference"] == {"reference": "RelatedPerson/EPC1000-lpa"}
    assert attorney_of(attorney).name == "Karen Whitfield"
    death = mapped[("Observation", "EPC1030-ppd")]
    assert death["valueCodeableConcept"]["coding"][0]["code"] == "284546000"  # Hospice
    assert classify(death).kind == "place_of_death"
    care = mapped[("Observation", "EPC1000-ppc")]
    assert care["valueCodeableConcept"]["coding"][0]["code"] == "264362003"  # Home
    assert classify(care).kind == "place_of_care"
    register = mapped[("Flag", "EPC1000-register")]
    assert register["period"] == {"start": "2026-10-01"}
    assert classify(register).kind == "eol_register"
