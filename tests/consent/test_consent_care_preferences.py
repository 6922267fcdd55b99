"""What counts as an end-of-life / resuscitation care preference."""

from __future__ import annotations

from consent.care_preferences import is_care_preference

SCT = "http://snomed.info/sct"


def test_dnacpr_and_cpr_flags():
    for code in ("450476008", "450475007", "304253006", "304252001"):
        flag = {"resourceType": "Flag", "code": {"coding": [{"system": SCT, "code": code}]}}
        assert is_care_preference(flag)


def test_adr_consent_is_a_preference_privacy_consent_is_not():
    adr = {"resourceType": "Consent", "scope": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]}}
    assert is_care_preference(adr)
    privacy = {"resourceType": "Consent", "scope": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "provision": {"code": [{"coding": [{"system": SCT, "code": "450476008"}]}]}}
    assert not is_care_preference(privacy)


def test_lasting_power_of_attorney_related_person():
    lpa = {"resourceType": "RelatedPerson", "relationship": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "HPOWATT"}]}]}
    assert is_care_preference(lpa)
    sister = {"resourceType": "RelatedPerson", "relationship": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "SIS"}]}]}
    assert not is_care_preference(sister)


def test_kind_tag_and_unrelated_resources():
    tagged = {"resourceType": "CarePlan", "meta": {"tag": [
        {"system": "https://exchange.example.nhs.uk/fhir/CodeSystem/care-preference-kind",
         "code": "respect"}]}}
    assert is_care_preference(tagged)
    bp = {"resourceType": "Observation", "code": {"coding": [{"system": SCT, "code": "75367002"}]}}
    assert not is_care_preference(bp)
    patient = {"resourceType": "Patient", "id": "x"}
    assert not is_care_preference(patient)


def test_codes_from_the_eol_code_list_are_care_preferences():
    """Codes the end-of-life engine lists (exchange/operations/eol_codes.yaml) count too."""
    adrt = {"resourceType": "Flag", "code": {"coding": [{"system": SCT, "code": "816301000000100"}]}}
    place = {"resourceType": "Observation", "code": {"coding": [{"system": SCT, "code": "395091006"}]}}
    respect = {"resourceType": "QuestionnaireResponse", "status": "completed",
               "questionnaire": "https://example.org/Questionnaire/respect-v3"}
    assert is_care_preference(adrt) and is_care_preference(place)
    assert is_care_preference(respect)
