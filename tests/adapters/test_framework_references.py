"""Reference rewriting for mapped resources (adapters.references): which references are
local keys, document order, ``@`` ids, and rewriting later from one walk."""

from __future__ import annotations

import copy

from adapters.references import (
    find_refs,
    keys_of_patients,
    patient_keys,
    rewrite_found,
    rewrite_refs,
)

RES = {
    "resourceType": "Encounter", "id": "E1",
    "subject": {"reference": "Patient/P1"},
    "episodeOfCare": [{"reference": "EpisodeOfCare/S55"}],
    "serviceProvider": {"reference": "Organization/@ods-N82001"},
    "participant": [{"individual": {"reference": "Practitioner/D1", "display": "Dr"}}, [{"reference": "Patient/P2"}]],
    "basedOn": [{"reference": "https://example.org/fhir/ServiceRequest/9"}, {"reference": "urn:uuid:x"},
                {"reference": "#c1"}, {"reference": "ServiceRequest/a/b"}, {"reference": "lower/x"},
                {"reference": "Type/with:colon"}],
    "note": [{"text": "Patient/P9 is not a reference"}],
    "reference": ["not", "a", "string"],
}


def test_find_refs_in_document_order_local_keys_only() -> None:
    found = find_refs(RES)
    assert [(t, k) for _, t, k in found] == [
        ("Patient", "P1"), ("EpisodeOfCare", "S55"), ("Organization", "@ods-N82001"),
        ("Practitioner", "D1"), ("Patient", "P2")]
    assert all(holder["reference"] == f"{t}/{k}" for holder, t, k in found)
    assert keys_of_patients(found) == {"P1", "P2"} == patient_keys([RES])


def test_rewrite_refs_and_rewrite_found_agree_and_leave_the_rest() -> None:
    def fn(t: str, k: str) -> str:
        return f"{t.lower()}-{k}"

    walked, once = copy.deepcopy(RES), copy.deepcopy(RES)
    rewrite_refs(walked, fn)
    found = find_refs(once)
    rewrite_found(found, fn)
    assert walked == once
    assert once["subject"] == {"reference": "Patient/patient-P1"}
    assert once["serviceProvider"] == {"reference": "Organization/ods-N82001"}
    assert once["basedOn"] == RES["basedOn"] and once["note"] == RES["note"]
    # rewriting again from the same walk gives the same result (the keys were kept)
    rewrite_found(found, fn)
    assert once == walked


def test_dry_run_calls_fn_for_local_keys_and_changes_nothing() -> None:
    seen: list[tuple[str, str]] = []
    res = copy.deepcopy(RES)
    rewrite_refs(res, lambda t, k: seen.append((t, k)), dry=True)
    assert res == RES
    assert seen == [("Patient", "P1"), ("EpisodeOfCare", "S55"), ("Practitioner", "D1"), ("Patient", "P2")]
