"""Which patient a resource is about (one definition for the choke point, writes, consent)."""

from exchange.repository.patients import patient_id_of, patient_refs


def test_subject_elements_absolute_urls_and_appointments():
    assert patient_id_of({"resourceType": "Patient", "id": "p1"}) == "p1"
    assert patient_id_of({"resourceType": "Observation", "subject": {"reference": "Patient/p2"}}) == "p2"
    assert patient_id_of({"resourceType": "Flag", "subject": {"reference": "https://x.example/fhir/Patient/p3/_history/2"}}) == "p3"
    assert patient_id_of({"resourceType": "Encounter", "subject": {"reference": "Group/g1"}}) is None
    appt = {"resourceType": "Appointment", "participant": [{"actor": {"reference": "Practitioner/d"}},
                                                           {"actor": {"reference": "Patient/p4"}}]}
    assert patient_id_of(appt) == "p4"
    both = {"resourceType": "Claim", "patient": {"reference": "Patient/a"}, "subject": {"reference": "Patient/b"}}
    assert sorted(patient_refs(both)) == ["a", "b"]
    assert patient_refs({"resourceType": "Organization", "id": "o"}) == []
