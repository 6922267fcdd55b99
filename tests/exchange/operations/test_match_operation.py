"""Patient/$match (FHIR R4 patient-operation-match.html) on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from exchange.db.engine import write_tx
from exchange.operations.match import MATCH_GRADE_URL, match
from exchange.outcome import Invalid
from exchange.pipeline.context import RequestContext, Requester
from exchange.pipeline.disclosure import PERMIT, Decision
from exchange.repository.store import write_version

NHS = "https://fhir.nhs.uk/Id/nhs-number"
BASE = "http://testserver/fhir"


def patient(pid, family, given, dob, gender="female", postcode="L17 4JP", nhs=None, **extra):
    p = {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}], "birthDate": dob,
         "gender": gender, "address": [{"postalCode": postcode}], **extra}
    if nhs:
        p["identifier"] = [{"system": NHS, "value": nhs}]
    return p


@pytest.fixture(scope="module")
def people(engine):
    rows = [
        patient("m-joan", "Whitfield", "Joan", "1936-02-11", postcode="L5 6PX", nhs="9990000425"),
        patient("m-joan-old", "Whitfield", "Joan", "1936-02-11", postcode="L5 6PX",
                link=[{"other": {"reference": "Patient/m-joan"}, "type": "replaced-by"}]),
        patient("m-renee", "Dubois", "Renée", "1929-12-01", nhs="9990000468"),
        patient("m-rene", "Dubois", "René", "1929-12-01", gender="male", postcode="L1 1AA"),
        patient("m-marie", "Dubois", "Marie", "1929-12-01", postcode="L1 1AA"),
        patient("m-twin1", "Twin", "Ann", "1950-05-05", postcode="L2 2BB", nhs="9990000476"),
        patient("m-twin2", "Twin", "Ann", "1950-05-05", postcode="L2 2BB", nhs="9990000484"),
    ]
    with write_tx(engine) as conn:
        for p in rows:
            write_version(conn, "Patient", p["id"], dict(p), method="PUT")
    return rows


def ctx(gate=None):
    c = RequestContext(requester=Requester(kind="system", scopes=frozenset({"system/*.*"})))
    c.gate = gate
    return c


def params(p, only_certain=None, count=None):
    out = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]}
    if only_certain is not None:
        out["parameter"].append({"name": "onlyCertainMatches", "valueBoolean": only_certain})
    if count is not None:
        out["parameter"].append({"name": "count", "valueInteger": count})
    return out


def run(engine, settings, p, gate=None, **kw):
    with engine.connect() as conn:
        c = ctx(gate)
        body = orjson.loads(match(conn, c, settings, params(p, **kw), BASE))
    return body, c


def grades(body):
    return [(e["resource"]["id"], e["search"]["extension"][0]["valueCode"]) for e in body["entry"]]


def test_nhs_number_is_certain_and_merged_patients_are_left_out(engine, settings, people):
    body, c = run(engine, settings, {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "999 000 0425"}]})
    assert body["type"] == "searchset" and body["total"] == 1
    (entry,) = body["entry"]
    assert entry["fullUrl"] == f"{BASE}/Patient/m-joan"
    assert entry["search"] == {"extension": [{"url": MATCH_GRADE_URL, "valueCode": "certain"}], "mode": "match", "score": 1.0}
    assert [r.resource_id for r in c.released] == ["m-joan"]


def test_demographics_without_nhs_number_grade_and_order(engine, settings, people):
    query = patient("q", "DUBOIS", "Renée", "1929-12-01")
    body, _ = run(engine, settings, query)
    got = grades(body)
    assert got[0] == ("m-renee", "certain")  # unique exact match with a verified NHS number
    assert ("m-marie", "possible") in got
    assert all(g != "certainly-not" for _, g in got)
    only, _ = run(engine, settings, query, only_certain=True)
    assert grades(only) == [("m-renee", "certain")]
    first, _ = run(engine, settings, query, count=1)
    assert len(first["entry"]) == 1


def test_two_exact_demographic_matches_are_only_probable(engine, settings, people):
    body, _ = run(engine, settings, patient("q", "Twin", "Ann", "1950-05-05", postcode="L2 2BB"))
    assert sorted(grades(body)) == [("m-twin1", "probable"), ("m-twin2", "probable")]
    only, _ = run(engine, settings, patient("q", "Twin", "Ann", "1950-05-05", postcode="L2 2BB"), only_certain=True)
    assert only["entry"] == []


class DenyRenee:
    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return None

    def check(self, conn, ctx, resource):  # noqa: ANN001
        return Decision("deny", rule="test-objection") if resource.id == "m-renee" else PERMIT


def test_results_pass_the_disclosure_choke_point(engine, settings, people):
    body, c = run(engine, settings, patient("q", "Dubois", "Renée", "1929-12-01"), gate=DenyRenee())
    assert "m-renee" not in [i for i, _ in grades(body)]
    assert c.withheld == 1 and c.withheld_rules["test-objection"] == 1
    assert body["total"] == len(body["entry"])


@pytest.mark.parametrize("bad", [
    {"resourceType": "Patient"},
    {"resourceType": "Parameters", "parameter": []},
    {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Observation"}}]},
    {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}}]},
    {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "1950"}},
                                                 {"name": "count", "valueInteger": 0}]},
])
def test_bad_parameters_are_invalid(engine, settings, bad):
    with engine.connect() as conn, pytest.raises(Invalid):
        match(conn, ctx(), settings, bad, BASE)


def test_match_over_http(client, people):
    body = params({"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000425"}]}, only_certain=True)
    resp = client.post("/fhir/Patient/$match", json=body, headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["type"] == "searchset"
    assert [e["resource"]["id"] for e in data["entry"]] == ["m-joan"]
    bad = client.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": []},
                      headers={"Content-Type": "application/fhir+json"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
