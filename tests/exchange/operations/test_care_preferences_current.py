"""Pure tests: what counts as a care preference and which one is current (issue 6)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import KIND, SCT, attorney, dnr_consent, flag, observation  # noqa: E402

from exchange.operations.eol_classify import attorney_of, classify  # noqa: E402
from exchange.operations.eol_codes import codebook  # noqa: E402
from exchange.operations.eol_current import assess  # noqa: E402
from exchange.operations.eol_model import (  # noqa: E402
    CANCELLED,
    CURRENT,
    ENTERED_IN_ERROR,
    FOR_CPR,
    NOT_FOR_CPR,
    NOT_YET_ACTIVE,
    REVIEW_OVERDUE,
    SUPERSEDED,
    parse_fhir_date,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def run(*resources):  # noqa: ANN002, ANN201
    items = [p for p in (classify(r) for r in resources) if p is not None]
    atts = [a for a in (attorney_of(r) for r in resources) if a is not None]
    return assess(items, atts, now=NOW)


def by_id(a, rid):  # noqa: ANN001, ANN201
    return next(p for p in a.items if p.resource_id == rid)


# --- what counts --------------------------------------------------------------------


@pytest.mark.parametrize("code,cpr", [("450476008", NOT_FOR_CPR), ("304253006", NOT_FOR_CPR),
                                      ("450475007", FOR_CPR), ("304252001", FOR_CPR)])
def test_cpr_flags_of_every_code(code: str, cpr: str) -> None:
    p = classify(flag("f", code))
    assert p is not None and p.kind == "cpr" and p.cpr == cpr
    assert p.decided and p.decided.text == "2025-03-01"
    assert p.author_display == "Dr Patel" and p.source == "GP"


def test_dnr_consent_is_a_dnacpr_with_its_document() -> None:
    p = classify(dnr_consent("c1"))
    assert p is not None and p.kind == "cpr" and p.cpr == NOT_FOR_CPR
    assert p.source_org == "City Hospital NHS Trust"
    assert p.document == "Signed form in the red folder"
    assert p.decided and p.decided.text == "2025-05-02"


def test_acd_consent_is_an_advance_decision() -> None:
    p = classify(dnr_consent("c2", category="acd"))
    assert p is not None and p.kind == "adrt"


def test_privacy_consent_is_not_a_preference() -> None:
    c = dnr_consent("c3")
    c["scope"]["coding"][0]["code"] = "patient-privacy"
    c["category"][0]["coding"][0]["code"] = "INFA"
    assert classify(c) is None


def test_gp_not_for_resuscitation_observation_is_a_cpr_decision() -> None:
    p = classify(observation("o1", "304253006"))
    assert p is not None and p.kind == "cpr" and p.cpr == NOT_FOR_CPR
    # also when the CPR concept is the value of a "resuscitation status" observation
    o = observation("o2", None, code_text="Resuscitation status",
                    value={"coding": [{"system": SCT, "code": "304253006"}]})
    q = classify(o)
    assert q is not None and q.cpr == NOT_FOR_CPR


def test_adrt_lpa_register_flags() -> None:
    adrt = classify(flag("a", "816301000000100", text="Refuses ventilation and artificial feeding"))
    assert adrt and adrt.kind == "adrt" and "Refuses ventilation and artificial feeding" in adrt.details
    assert classify(flag("l", "816361000000101")).kind == "lpa"  # type: ignore[union-attr]
    assert classify(flag("r", "526631000000108")).kind == "eol_register"  # type: ignore[union-attr]


def test_flag_detail_extension_points_at_the_document() -> None:
    ext = [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
            "valueReference": {"reference": "DocumentReference/d1", "display": "Scanned ADRT form"}}]
    p = classify(flag("a", "816301000000100", ext=ext))
    assert p and p.document == "Scanned ADRT form"


def test_attorney_related_person() -> None:
    a = attorney_of(attorney("rp1"))
    assert a and a.name == "Ann Smith" and a.telecom == ["phone: 07700 900123"] and a.active
    plain = attorney("rp2")
    plain["relationship"][0]["coding"][0]["code"] = "WIFE"
    assert attorney_of(plain) is None


def test_preferred_places_and_mental_capacity() -> None:
    death = classify(observation("pd", "395091006", value={"text": "Home"}))
    assert death and death.kind == "place_of_death" and death.label.endswith("Home")
    care = classify(observation("pc", "place-of-care", system=KIND, value="Hospice"))
    assert care and care.kind == "place_of_care" and "Hospice" in care.label
    cap = classify(observation("mc", "mental-capacity", system=KIND, value="Lacks capacity",
                               code_text="Capacity to decide on CPR"))
    assert cap and cap.kind == "mental_capacity" and cap.topic == "capacity to decide on cpr"


def test_respect_careplan_and_questionnaire() -> None:
    cp = {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
          "subject": {"reference": "Patient/p1"},
          "category": [{"coding": [{"system": SCT, "code": "1382601000000107"}]}],
          "period": {"start": "2025-02-01"}, "author": {"display": "Dr Lee"},
          "activity": [{"detail": {"status": "not-started", "description": "Focus on comfort; avoid admission"}}]}
    p = classify(cp)
    assert p and p.kind == "respect" and "Focus on comfort; avoid admission" in p.details
    qr = {"resourceType": "QuestionnaireResponse", "id": "qr", "status": "completed",
          "questionnaire": "https://example.org/Questionnaire/ReSPECT-v3", "authored": "2025-02-02",
          "subject": {"reference": "Patient/p1"},
          "item": [{"linkId": "4", "text": "Care priority",
                    "answer": [{"valueString": "Symptom control over life prolonging treatment"}]}]}
    q = classify(qr)
    assert q and q.kind == "respect"
    assert "Care priority: Symptom control over life prolonging treatment" in q.details


def test_unrelated_resources_are_ignored() -> None:
    assert classify(observation("bp", "75367002")) is None
    assert classify({"resourceType": "Condition", "id": "x"}) is None


def test_every_yaml_code_is_recognised() -> None:
    book = codebook()
    for (system, code), entry in book.by_coding.items():
        assert book.lookup({"system": system, "code": code}) == entry
    assert "450476008" in book.all_snomed_codes()


# --- what is current -----------------------------------------------------------------


def test_latest_decision_from_a_source_supersedes_earlier_ones() -> None:
    a = run(flag("old", "450476008", start="2024-01-01"), flag("new", "450475007", start="2025-01-01"))
    assert by_id(a, "new").state == CURRENT
    old = by_id(a, "old")
    assert old.state == SUPERSEDED and old.superseded_by == "Flag/new"
    assert a.conflicts == []  # same source: a change of decision, not a conflict


def test_cancelled_and_entered_in_error_are_never_current() -> None:
    a = run(flag("x", "450476008", status="inactive", start="2025-04-01"),
            flag("y", "450476008", status="entered-in-error", start="2025-05-01"),
            flag("z", "450475007", start="2024-01-01"))
    assert by_id(a, "x").state == CANCELLED
    assert by_id(a, "y").state == ENTERED_IN_ERROR
    assert by_id(a, "z").state == CURRENT  # the cancelled later ones do not supersede it
    assert [p.resource_id for p in a.current("cpr")] == ["z"]


def test_draft_consent_is_not_yet_active() -> None:
    a = run(dnr_consent("c", status="proposed"))
    assert by_id(a, "c").state == NOT_YET_ACTIVE and a.current() == []


def test_review_date_in_the_past_needs_review_and_is_not_current() -> None:
    a = run(flag("f", "450476008", start="2024-01-01", end="2025-01-01"))
    p = by_id(a, "f")
    assert p.state == REVIEW_OVERDUE and p.needs_review
    assert a.current("cpr") == []
    assert [w.code for w in a.warnings] == ["review-overdue"]
    assert "2025-01-01" in a.warnings[0].text


def test_review_date_in_the_future_is_current() -> None:
    a = run(flag("f", "450476008", start="2025-01-01", end="2025-12-01"))
    assert by_id(a, "f").state == CURRENT and a.warnings == []


def test_partial_review_date_covers_the_whole_month() -> None:
    a = run(flag("f", "450476008", start="2025-01-01", end="2025-06"))
    assert by_id(a, "f").state == CURRENT  # June 2025 is not over on 1 June


def test_cross_source_disagreement_is_an_explicit_conflict() -> None:
    gp = flag("gp", "450476008", source="GP", start="2025-03-01", author="Dr Patel")
    hosp = flag("h", "450475007", source="Hospital", start="2025-05-01", author="Dr Jones")
    a = run(gp, hosp)
    assert {p.resource_id for p in a.current("cpr")} == {"gp", "h"}  # neither silently picked
    (c,) = a.conflicts
    assert {p.resource_id for p in c.items} == {"gp", "h"}
    for text in ("Dr Patel", "Dr Jones", "2025-03-01", "2025-05-01", "GP", "Hospital"):
        assert text in c.summary


def test_consent_and_flag_from_different_sources_conflict() -> None:
    a = run(dnr_consent("c", source="Hospital"), flag("gp", "450475007", source="GP"))
    assert len(a.conflicts) == 1


def test_agreeing_sources_do_not_conflict() -> None:
    a = run(flag("gp", "450476008", source="GP"), dnr_consent("c", source="Hospital"))
    assert a.conflicts == [] and len(a.current("cpr")) == 2


def test_superseded_or_overdue_decisions_do_not_create_conflicts() -> None:
    a = run(flag("gp", "450476008", source="GP", start="2024-01-01", end="2024-06-01"),
            flag("h", "450475007", source="Hospital", start="2025-05-01"))
    assert a.conflicts == []
    assert by_id(a, "gp").state == REVIEW_OVERDUE


def test_incomplete_current_decision_is_warned() -> None:
    a = run(flag("f", "450476008", start=None, author=None))
    assert [w.code for w in a.warnings] == ["incomplete"]


def test_mental_capacity_assessments_supersede_per_decision() -> None:
    def cap(i: str, topic: str, when: str) -> dict:
        return observation(i, "mental-capacity", system=KIND, value="Lacks capacity", code_text=topic, when=when)
    a = run(cap("m1", "Capacity to decide on CPR", "2025-01-01"),
            cap("m2", "Capacity to manage finances", "2025-02-01"),
            cap("m3", "Capacity to decide on CPR", "2025-03-01"))
    assert by_id(a, "m1").state == SUPERSEDED
    assert by_id(a, "m2").state == CURRENT and by_id(a, "m3").state == CURRENT


def test_parse_fhir_date_precisions() -> None:
    assert parse_fhir_date("2025").end.month == 12  # type: ignore[union-attr]
    assert parse_fhir_date("2025-02").end.day == 28  # type: ignore[union-attr]
    assert parse_fhir_date("2025-02-03T10:00:00+01:00").start.hour == 9  # type: ignore[union-attr]
    assert parse_fhir_date("garbage") is None and parse_fhir_date(None) is None


def test_source_declared_superseded_is_shown_as_superseded() -> None:
    ext = [{"url": "https://x.example/StructureDefinition/register-entry-status",
            "valueCoding": {"code": "superseded"}}]
    a = run(flag("s", "450476008", status="inactive", ext=ext))
    assert by_id(a, "s").state == SUPERSEDED and a.current() == []


def test_legacy_kind_system_is_still_recognised() -> None:
    legacy = "https://care-record-exchange.example.org/fhir/CodeSystem/care-preference-kind"
    p = classify(observation("pc", "place-of-care", system=legacy, value="Home"))
    assert p is not None and p.kind == "place_of_care"


def test_is_care_preference_covers_every_kind_and_attorneys() -> None:
    from exchange.operations.eol_classify import is_care_preference
    from exchange.operations.eol_demo import demo_resources

    demo = demo_resources("p1")
    prefs = [r for r in demo if r["resourceType"] not in ("Organization", "Practitioner", "PractitionerRole")]
    assert prefs and all(is_care_preference(r) for r in prefs)
    assert not any(is_care_preference(r) for r in demo if r not in prefs)
    assert not is_care_preference(observation("bp", "75367002"))


def test_records_of_unknown_source_never_supersede_each_other() -> None:
    a1, a2 = flag("u1", "450476008", start="2025-01-01"), flag("u2", "450475007", start="2025-02-01")
    for r in (a1, a2):
        r["meta"] = {}
    a = run(a1, a2)
    assert {p.state for p in a.items} == {CURRENT}
    assert len(a.conflicts) == 1  # the disagreement is shown, not resolved by guesswork
