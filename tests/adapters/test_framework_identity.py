"""NHS number checks, deterministic ids and the match grades (adapters.identity)."""

from __future__ import annotations

import re

import pytest

from adapters.identity import (
    demographic_key,
    grade,
    nhs_check_digit,
    nhs_number_valid,
    normalise_nhs_number,
    shared_patient_id,
    stored_id,
    verified_nhs_number,
)

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@pytest.mark.parametrize("raw", ["9990000425", "999 000 0425", "999-000-0425", " 999 000 0425 ", "9434765919"])
def test_valid_nhs_numbers(raw):
    assert nhs_number_valid(raw)


@pytest.mark.parametrize("raw", ["9990000426", "999000042", "99900004255", "999O000425", "", None, "1234567890"])
def test_invalid_nhs_numbers(raw):
    assert not nhs_number_valid(raw)


def test_check_digit_rules():
    assert nhs_check_digit("943476591") == 9
    assert normalise_nhs_number("999 000-0425") == "9990000425"
    # a remainder giving check digit 10 means no valid number exists with these nine digits
    assert nhs_check_digit("123456789") == 10 or nhs_check_digit("123456789") is None
    invalid_nine = next(f"{n:09d}" for n in range(100000000, 100001000) if nhs_check_digit(f"{n:09d}") is None)
    assert not any(nhs_number_valid(invalid_nine + str(d)) for d in range(10))


def test_verified_number_respects_uk_core_verification_status():
    ident = {"system": NHS, "value": "999 000 0425"}
    assert verified_nhs_number({"identifier": [ident]}) == "9990000425"
    unverified = dict(ident, extension=[{
        "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
        "valueCodeableConcept": {"coding": [{"code": "02"}]}}])
    assert verified_nhs_number({"identifier": [unverified]}) is None
    assert verified_nhs_number({"identifier": [{"system": NHS, "value": "9990000426"}]}) is None
    assert verified_nhs_number({"identifier": [{"system": "urn:other", "value": "9990000425"}]}) is None


def test_deterministic_ids_are_valid_stable_and_distinct():
    a = stored_id("N82001", "LAS100200", "Patient")
    assert a == stored_id("N82001", "LAS100200", "Patient")
    assert ID_RE.match(a) and a.startswith("n82001-")
    assert a != stored_id("N82001", "LAS100200", "Observation")
    assert a != stored_id("N82002", "LAS100200", "Patient")
    weird = stored_id("urn:oid:2.16.840.1.113883.2.1.3.2.4.18.48|x y", "key with spaces/and|bars" * 5, "Flag")
    assert ID_RE.match(weird)
    pid = shared_patient_id("9990000425")
    assert ID_RE.match(pid) and "9990000425" not in pid


def person(family="Dubois", given="Renée", dob="1929-12-01", gender="female", postcode="L17 4JP", nhs=None):
    p = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": dob,
         "gender": gender, "address": [{"postalCode": postcode}]}
    if nhs:
        p["identifier"] = [{"system": NHS, "value": nhs}]
    return p


def test_demographic_key_normalises_case_spacing_and_apostrophes():
    assert demographic_key(person(family="O'HARE", postcode="l3 6jr")) == demographic_key(person(family="O'Hare", postcode="L36JR"))
    assert demographic_key(person(postcode="")) is None
    assert demographic_key(person(given="Renée")) != demographic_key(person(given="Renee"))  # no accent folding


def test_match_grades():
    assert grade(person(nhs="9990000425"), person(nhs="999 000 0425")) == ("certain", 1.0)
    assert grade(person(nhs="9990000425"), person(nhs="9990000433"))[0] == "certainly-not"
    assert grade(person(), person())[0] == "certain"
    assert grade(person(), person(postcode="L1 1AA"))[0] == "probable"
    assert grade(person(), person(given="Marie", postcode="L1 1AA"))[0] == "possible"
    assert grade(person(), person(family="Smith", given="Ann", dob="1950-01-01")) is None
