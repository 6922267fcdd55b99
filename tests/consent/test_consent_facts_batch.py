"""The set-based consent-facts indexer (adapters' bulk writer) writes exactly the rows the
per-resource indexer (core write path) writes."""

from __future__ import annotations

from sqlalchemy import delete, select

from consent.facts import index_facts, index_facts_many
from consent.tables import consent_fact, consent_link
from exchange.db.engine import write_tx

RESOURCES = [
    (900001, "Patient", {"resourceType": "Patient", "id": "fb-p", "generalPractitioner": [
        {"reference": "Organization/org-N82001", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                                "value": "N82001"}}]}),
    (900002, "Encounter", {"resourceType": "Encounter", "id": "fb-e", "status": "in-progress",
                           "class": {"code": "AMB"}, "subject": {"reference": "Patient/fb-p"},
                           "serviceProvider": {"reference": "Organization/org-REM"}}),
    (900003, "Observation", {"resourceType": "Observation", "id": "fb-o", "status": "final", "code": {"text": "x"},
                             "subject": {"reference": "Patient/fb-p"},
                             "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                                    "code": "R"}]}}),
    (900004, "Consent", {"resourceType": "Consent", "id": "fb-c", "status": "active",
                         "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": "Patient/fb-p"},
                         "category": [{"text": "x"}], "provision": {"type": "deny"}}),
]


def _rows(conn):  # noqa: ANN001, ANN202
    rids = [r for r, _, _ in RESOURCES]
    facts = [tuple(r) for r in conn.execute(select(consent_fact).where(consent_fact.c.rid.in_(rids))
                                            .order_by(consent_fact.c.rid))]
    links = sorted(tuple(r)[1:] for r in conn.execute(select(consent_link).where(consent_link.c.rid.in_(rids))))
    return facts, links


def _clear(conn):  # noqa: ANN001, ANN202
    rids = [r for r, _, _ in RESOURCES]
    conn.execute(delete(consent_link).where(consent_link.c.rid.in_(rids)))
    conn.execute(delete(consent_fact).where(consent_fact.c.rid.in_(rids)))


def test_batch_indexer_writes_what_the_single_indexer_writes(engine):
    with write_tx(engine) as conn:
        _clear(conn)
        for rid, rtype, res in RESOURCES:
            index_facts(conn, rid, rtype, res)
        single = _rows(conn)
        _clear(conn)
        index_facts_many(conn, RESOURCES, fresh={r for r, _, _ in RESOURCES})
        batch = _rows(conn)
        index_facts_many(conn, RESOURCES)  # re-index over existing rows: replaces, no duplicates
        again = _rows(conn)
        _clear(conn)
    assert single[0] and single[1], "the fixture must produce facts and links"
    assert batch == single
    assert again == single
