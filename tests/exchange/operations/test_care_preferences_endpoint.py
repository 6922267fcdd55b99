"""$care-preferences through the real FHIR facade, on SQLite and PostgreSQL (issue 6)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import KIND, attorney, flag, observation  # noqa: E402

from exchange.db.engine import read_tx, write_tx  # noqa: E402
from exchange.operations.care_preferences import care_preferences, operation_definition  # noqa: E402
from exchange.outcome import Forbidden, NotFound  # noqa: E402
from exchange.pipeline.context import RequestContext, Requester  # noqa: E402
from exchange.pipeline.disclosure import PERMIT, Decision  # noqa: E402
from exchange.repository.store import lock_current, write_version  # noqa: E402

PID = "eol-p1"
EXT_STATE = "https://exchange.example.nhs.uk/fhir/StructureDefinition/care-preference-state"


def put(conn, res: dict) -> None:  # noqa: ANN001
    cur = lock_current(conn, res["resourceType"], res["id"])
    write_version(conn, res["resourceType"], res["id"], dict(res), method="PUT", current=cur)


def seed(engine) -> None:  # noqa: ANN001
    resources = [
        {"resourceType": "Patient", "id": PID, "name": [{"family": "Evans", "given": ["Rose"]}]},
        {"resourceType": "Patient", "id": "eol-other"},
        {"resourceType": "Practitioner", "id": "gp-patel", "name": [{"text": "Dr Asha Patel"}]},
        {"resourceType": "Patient", "id": "eol-none"},
        # GP: older DNACPR superseded by a newer one (March), authored by a Practitioner resource
        flag("gp-old", "450476008", source="GP", start="2023-01-01", patient=PID, author=None,
             author_ref="Practitioner/gp-patel"),
        flag("gp-dnacpr", "450476008", source="GP", start="2025-03-01", end="2099-03-01", patient=PID,
             author=None, author_ref="Practitioner/gp-patel"),
        # Hospital: For CPR (May) -> conflict with the GP's DNACPR
        flag("h-cpr", "450475007", source="Hospital", start="2025-05-01", patient=PID, author="Dr Jones"),
        # Community: a cancelled DNACPR, never current
        flag("c-cancelled", "450476008", source="Community", status="inactive", start="2025-04-01", patient=PID),
        # ADRT with a review date in the past
        flag("gp-adrt", "816301000000100", source="GP", start="2022-01-01", end="2023-01-01", patient=PID,
             text="Refuses mechanical ventilation"),
        flag("gp-lpa", "816361000000101", source="GP", start="2024-06-01", patient=PID),
        attorney("lpa-ann", patient=PID),
        observation("pod", "395091006", source="Community", value={"text": "Home"}, patient=PID),
        observation("poc", "place-of-care", system=KIND, source="Community", value="Home", patient=PID),
        observation("cap", "mental-capacity", system=KIND, source="Hospital", value="Has capacity",
                    code_text="Capacity to make CPR decision", patient=PID),
        observation("bp", "75367002", source="GP", value="120/80", patient=PID),  # not a preference
        flag("other-dnacpr", "450476008", patient="eol-other"),  # someone else's
    ]
    with write_tx(engine) as conn:
        for r in resources:
            put(conn, r)


@pytest.fixture(scope="module")
def seeded(engine):  # noqa: ANN001, ANN201
    seed(engine)
    return engine


def get_doc(client) -> dict:  # noqa: ANN001
    r = client.get(f"/fhir/Patient/{PID}/$care-preferences")
    assert r.status_code == 200, r.text
    return r.json()


def sections(doc: dict) -> dict[str, dict]:
    comp = doc["entry"][0]["resource"]
    return {s["code"]["coding"][0]["code"]: s for s in comp["section"]}


def states(section: dict) -> dict[str, str]:
    out = {}
    for e in section.get("entry", []):
        st = next((x["valueCode"] for x in e.get("extension", []) if x["url"] == EXT_STATE), None)
        out[e["reference"].rsplit("/", 1)[1]] = st
    return out


def test_document_bundle_shape(seeded, client) -> None:  # noqa: ANN001
    doc = get_doc(client)
    assert doc["resourceType"] == "Bundle" and doc["type"] == "document"
    assert doc["identifier"]["value"].startswith("urn:uuid:") and doc["timestamp"]
    assert doc["entry"][0]["resource"]["resourceType"] == "Composition"
    codes = list(sections(doc))
    assert codes == ["resuscitation-status", "respect", "advance-decisions", "lasting-power-of-attorney",
                     "preferred-place", "mental-capacity", "end-of-life-register", "conflicts-and-warnings"]
    # every section entry resolves to a Bundle entry
    full_urls = {e["fullUrl"] for e in doc["entry"]}
    for s in sections(doc).values():
        for e in s.get("entry", []):
            assert e["reference"] in full_urls
        assert s["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


def test_only_the_patients_preferences_are_included(seeded, client) -> None:  # noqa: ANN001
    doc = get_doc(client)
    ids = {e["resource"].get("id") for e in doc["entry"]}
    assert {"gp-dnacpr", "gp-old", "h-cpr", "c-cancelled", "gp-adrt", "gp-lpa", "lpa-ann", "pod", "poc", "cap",
            "gp-patel", PID} <= ids
    assert "bp" not in ids and "other-dnacpr" not in ids and "eol-other" not in ids


def test_states_supersession_cancellation_review(seeded, client) -> None:  # noqa: ANN001
    s = sections(get_doc(client))
    assert states(s["resuscitation-status"]) == {
        "gp-dnacpr": "current", "h-cpr": "current", "gp-old": "superseded", "c-cancelled": "cancelled",
    }
    assert states(s["advance-decisions"]) == {"gp-adrt": "review-overdue"}
    assert states(s["preferred-place"]) == {"poc": "current", "pod": "current"}
    assert states(s["mental-capacity"]) == {"cap": "current"}
    lpa = s["lasting-power-of-attorney"]
    assert any(e["reference"].endswith("RelatedPerson/lpa-ann") for e in lpa["entry"])
    assert "07700 900123" in lpa["text"]["div"]


def test_entries_carry_author_date_source(seeded, client) -> None:  # noqa: ANN001
    s = sections(get_doc(client))
    entry = next(e for e in s["resuscitation-status"]["entry"] if e["reference"].endswith("/gp-dnacpr"))
    ext = {x["url"].split("care-preference-", 1)[1]: x for x in entry["extension"]}
    assert ext["author"]["valueReference"]["display"] == "Dr Asha Patel"
    assert ext["date"]["valueDateTime"] == "2025-03-01"
    assert ext["review-date"]["valueDateTime"] == "2099-03-01"
    assert ext["source"]["valueString"] == "GP"
    assert "Dr Asha Patel" in s["resuscitation-status"]["text"]["div"]


def test_conflict_is_reported_with_both_decisions(seeded, client) -> None:  # noqa: ANN001
    doc = get_doc(client)
    issues = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    conflict = next(i for i in issues if i["code"]["coding"][0]["code"] == "conflict")
    assert conflict["severity"] == "high"
    implicated = {r["reference"].rsplit("/", 1)[1] for r in conflict["implicated"]}
    assert implicated == {"gp-dnacpr", "h-cpr"}
    for text in ("Dr Asha Patel", "Dr Jones", "2025-03-01", "2025-05-01", "GP", "Hospital"):
        assert text in conflict["detail"]
    overdue = next(i for i in issues if i["code"]["coding"][0]["code"] == "review-overdue")
    assert overdue["implicated"][0]["reference"].endswith("Flag/gp-adrt")
    assert "CONFLICT" in doc["entry"][0]["resource"]["text"]["div"]


def test_patient_without_preferences(seeded, client) -> None:  # noqa: ANN001
    r = client.get("/fhir/Patient/eol-none/$care-preferences")
    assert r.status_code == 200
    s = sections(r.json())
    assert all("entry" not in sec and sec["emptyReason"]["coding"][0]["code"] == "nilknown" for sec in s.values())


def test_unknown_patient_is_404(seeded, client) -> None:  # noqa: ANN001
    assert client.get("/fhir/Patient/nobody/$care-preferences").status_code == 404


class DenyFlagsFromHospital:
    """A gate that withholds the hospital's records (stands in for a consent restriction)."""

    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return None

    def check(self, conn, ctx, resource):  # noqa: ANN001
        tags = resource.data.get("meta", {}).get("tag", [])
        if any(t.get("code") == "Hospital" for t in tags):
            return Decision("deny", rule="test-restriction")
        return PERMIT


def test_withheld_records_never_reach_the_document(seeded, settings) -> None:  # noqa: ANN001
    ctx = RequestContext(requester=Requester(kind="user"), interaction="operation", resource_type="Patient",
                         resource_id=PID, gate=DenyFlagsFromHospital())
    with read_tx(seeded) as conn:
        import orjson

        doc = orjson.loads(care_preferences(conn, ctx, settings, PID, "http://x/fhir"))
    ids = {e["resource"].get("id") for e in doc["entry"]}
    assert "h-cpr" not in ids and "cap" not in ids
    issues = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    codes = {i["code"]["coding"][0]["code"] for i in issues}
    assert "conflict" not in codes  # a hidden decision cannot surface as one side of a conflict
    # nor as a count: without a consent notice saying the class is restricted, the document
    # says nothing about withheld preferences (it would reveal that one exists)
    assert "withheld" not in codes
    assert ctx.withheld == 2 and ctx.withheld_rules["test-restriction"] == 2
    assert {r.resource_id for r in ctx.released} >= {PID, "gp-dnacpr"}


class DenyAll:
    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return None

    def check(self, conn, ctx, resource):  # noqa: ANN001
        return Decision("deny", rule="no-relationship")


def test_invisible_patient_is_forbidden_and_unknown_is_not_found(seeded, settings) -> None:  # noqa: ANN001
    ctx = RequestContext(requester=Requester(kind="user"), gate=DenyAll())
    with read_tx(seeded) as conn:
        with pytest.raises(Forbidden):
            care_preferences(conn, ctx, settings, PID, "http://x/fhir")
        with pytest.raises(NotFound):
            care_preferences(conn, ctx, settings, "missing", "http://x/fhir")


def test_operation_definition_matches_the_route() -> None:
    od = operation_definition()
    assert od["code"] == "care-preferences" and od["instance"] is True and od["resource"] == ["Patient"]
    from exchange.operations.registry import OPERATIONS

    spec = next(o for o in OPERATIONS if o.name == "care-preferences")
    assert spec.definition == od["url"]


def test_demo_patient_through_a_transaction(seeded, client) -> None:  # noqa: ANN001
    from exchange.operations.eol_demo import demo_bundle, demo_examples

    hdr = {"Content-Type": "application/fhir+json"}
    assert client.put("/fhir/Patient/eol-demo", json={"resourceType": "Patient", "id": "eol-demo"},
                      headers=hdr).status_code in (200, 201)
    for _ in range(2):  # idempotent: loading twice changes nothing that matters
        r = client.post("/fhir", json=demo_bundle("eol-demo"), headers=hdr)
        assert r.status_code == 200, r.text
    doc = client.get("/fhir/Patient/eol-demo/$care-preferences").json()
    s = sections(doc)
    assert states(s["resuscitation-status"]) == {
        "eol-demo-gp-dnacpr": "current", "eol-demo-h-forcpr": "current", "eol-demo-c-dnacpr-old": "cancelled"}
    assert states(s["advance-decisions"]) == {"eol-demo-gp-adrt": "review-overdue"}
    issues = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert [i["code"]["coding"][0]["code"] for i in issues].count("conflict") == 1
    gp = next(e for e in s["resuscitation-status"]["entry"] if e["reference"].endswith("eol-demo-gp-dnacpr"))
    ext = {x["url"].split("care-preference-", 1)[1]: x for x in gp["extension"]}
    assert ext["author"]["valueReference"]["display"] == "Dr Asha Patel"
    assert ext["source-organization"]["valueString"] == "Riverside Medical Practice"
    assert "kitchen drawer" in s["resuscitation-status"]["text"]["div"]
    assert any("$care-preferences" in line for line in demo_examples("http://testserver/fhir", "eol-demo"))


def test_candidates_come_from_the_index_not_a_scan(seeded) -> None:  # noqa: ANN001
    from exchange.operations.eol_load import candidate_rids
    from exchange.repository.store import read_many_current

    with read_tx(seeded) as conn:
        got = {s.id for s in read_many_current(conn, candidate_rids(conn, PID))}
    assert {"gp-dnacpr", "h-cpr", "pod", "poc", "cap", "lpa-ann"} <= got
    assert "bp" not in got and "other-dnacpr" not in got  # ordinary observations are not even loaded


def test_scan_fallback_finds_the_same_preferences(seeded, monkeypatch) -> None:  # noqa: ANN001
    from exchange.operations import eol_load
    from exchange.operations.eol_classify import is_care_preference
    from exchange.repository.store import read_many_current

    with read_tx(seeded) as conn:
        indexed = {s.id for s in read_many_current(conn, eol_load.candidate_rids(conn, PID))
                   if is_care_preference(s.data)}
        monkeypatch.setattr(eol_load, "_has_reference_index", lambda conn: False)
        scanned = {s.id for s in read_many_current(conn, eol_load.candidate_rids(conn, PID))
                   if is_care_preference(s.data)}
    assert indexed == scanned and "gp-dnacpr" in scanned
