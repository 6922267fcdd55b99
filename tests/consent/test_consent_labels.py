"""Security labels on the way in, from the SNOMED CT code rules."""

from __future__ import annotations

import pytest

from consent.labels import CONFIDENTIALITY, apply_labels, security_labels

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SCT = "http://snomed.info/sct"


def cond(code: str, **meta: object) -> dict:
    r = {"resourceType": "Condition", "id": "c", "code": {"coding": [{"system": SCT, "code": code}]}}
    if meta:
        r["meta"] = dict(meta)
    return r


@pytest.mark.parametrize(("code", "sensitivity"), [
    ("105629000", "STD"),   # chlamydial infection: sexual health
    ("86406008", "HIV"),    # HIV infection
    ("52637005", "SEX"),    # in vitro fertilisation: fertility treatment
    ("386639001", "SEX"),   # termination of pregnancy
    ("93461009", "SEX"),    # gender dysphoria: gender history
])
def test_restricted_codes_get_sensitivity_and_restricted_confidentiality(code, sensitivity):
    labels = security_labels(apply_labels(cond(code)))
    assert (ACT, sensitivity) in labels
    assert (CONFIDENTIALITY, "R") in labels


def test_codes_anywhere_in_the_resource_count():
    proc = {"resourceType": "Procedure", "id": "p",
            "reasonCode": [{"coding": [{"system": SCT, "code": "8619003"}]}]}
    assert (ACT, "SEX") in security_labels(apply_labels(proc))


def test_ordinary_resources_are_untouched():
    r = cond("38341003")  # hypertension
    assert apply_labels(r) == cond("38341003")


def test_existing_labels_kept_and_confidentiality_never_lowered():
    r = cond("105629000", security=[{"system": CONFIDENTIALITY, "code": "V"},
                                     {"system": ACT, "code": "NOPAT"}])
    out = apply_labels(r)["meta"]["security"]
    assert [s["code"] for s in out if s["system"] == CONFIDENTIALITY] == ["V"]
    assert {s["code"] for s in out if s["system"] == ACT} == {"NOPAT", "STD"}
    again = apply_labels(r)
    assert len(again["meta"]["security"]) == len(out)


def test_normal_confidentiality_is_raised_to_restricted():
    r = cond("57797005", security=[{"system": CONFIDENTIALITY, "code": "N"}])
    codes = [s["code"] for s in apply_labels(r)["meta"]["security"] if s["system"] == CONFIDENTIALITY]
    assert codes == ["R"]
