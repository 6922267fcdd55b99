"""GET /fhir/AuditEvent search and read over the log (search_audit / read_audit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from audit_helpers import BREAK_GLASS, CLINICIAN, make_ctx

from exchange.audit.event import token_event
from exchange.audit.fhir import date_range, read_audit, search_audit
from exchange.db.engine import read_tx
from exchange.outcome import Invalid
from exchange.pipeline.context import RequestContext, Requester

BASE = "http://127.0.0.1:8080/fhir"
IG = Requester(kind="user", client_id="ig-console", scopes=frozenset({"system/AuditEvent.read"}))


def _search(engine, settings, params):  # noqa: ANN001, ANN202
    ctx = RequestContext(requester=IG, interaction="search-type", resource_type="AuditEvent")
    with read_tx(engine) as conn:
        bundle = orjson.loads(search_audit(conn, ctx, settings, params, BASE))
    return bundle, ctx


@pytest.fixture
def filled(audit_db, sink):  # noqa: ANN001, ANN201
    sink.record(make_ctx(patients=("p1",), released=(("Patient", "p1"),)))
    sink.record(make_ctx(BREAK_GLASS, resource_id="p2", relationship=False))
    sink.record(make_ctx(interaction="search-type", resource_type="Observation", resource_id=None,
                         patients=("p1", "p3"), released=(("Observation", "o1"),)))
    sink.record(make_ctx(status=403, resource_id="p4"))
    sink.record_event(token_event(401, "rogue", "bad assertion", subtype="auth-failure"))
    return audit_db


def _ids(bundle) -> list[str]:  # noqa: ANN001
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_search_by_patient_agent_purpose_outcome(filled) -> None:  # noqa: ANN001
    engine, settings = filled
    b, ctx = _search(engine, settings, [("patient", "Patient/p1")])
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset" and b["total"] == 2
    assert all(e["fullUrl"].startswith(f"{BASE}/AuditEvent/") for e in b["entry"])
    assert [r.resource_type for r in ctx.released] == ["AuditEvent", "AuditEvent"]
    assert _search(engine, settings, [("patient", "p1,p2")])[0]["total"] == 3
    assert _search(engine, settings, [("agent", "555999888777")])[0]["total"] == 1
    assert _search(engine, settings, [("agent", CLINICIAN.client_id)])[0]["total"] == 3
    assert _search(engine, settings, [("agent", "rogue")])[0]["total"] == 1
    bg = _search(engine, settings, [("purpose", "http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG")])[0]
    assert bg["total"] == 1
    assert bg["entry"][0]["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert _search(engine, settings, [("outcome", "4")])[0]["total"] == 2
    assert _search(engine, settings, [("entity-type", "Observation")])[0]["total"] == 1
    assert _search(engine, settings, [("subtype", "search-type")])[0]["total"] == 1
    assert _search(engine, settings, [("type", "110114")])[0]["total"] == 1
    assert _search(engine, settings, [("agent-name", "khan")])[0]["total"] == 1
    # repeated parameters AND together
    assert _search(engine, settings, [("patient", "p1"), ("subtype", "read")])[0]["total"] == 1


def test_date_prefixes(filled) -> None:  # noqa: ANN001
    engine, settings = filled
    today = datetime.now(UTC).date().isoformat()
    assert _search(engine, settings, [("date", today)])[0]["total"] == 5
    assert _search(engine, settings, [("date", f"lt{today}")])[0]["total"] == 0
    assert _search(engine, settings, [("date", f"ge{today}")])[0]["total"] == 5
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert _search(engine, settings, [("date", f"gt{tomorrow}")])[0]["total"] == 0
    assert _search(engine, settings, [("date", f"ne{today}")])[0]["total"] == 0
    assert date_range("2024-02") == (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    assert date_range("2024-12-31T23:59")[1] == datetime(2025, 1, 1, tzinfo=UTC)


def test_paging_newest_first(filled) -> None:  # noqa: ANN001
    engine, settings = filled
    first, _ = _search(engine, settings, [("_count", "2")])
    assert first["total"] == 5 and len(first["entry"]) == 2
    seen = _ids(first)
    nxt = [link["url"] for link in first["link"] if link["relation"] == "next"][0]
    while nxt:
        params = parse_qsl(urlsplit(nxt).query)
        page, _ = _search(engine, settings, params)
        seen += _ids(page)
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 5
    newest = _search(engine, settings, [("_count", "1")])[0]["entry"][0]["resource"]
    assert newest["type"]["code"] == "110114"  # the last one recorded comes first


def test_invalid_parameters_are_rejected(filled) -> None:  # noqa: ANN001
    engine, settings = filled
    for params in ([("bogus", "1")], [("date", "yesterday")], [("_count", "x")],
                   [("outcome", "bad")], [("patient", "")]):
        with pytest.raises(Invalid):
            _search(engine, settings, params)


def test_read_audit(filled) -> None:  # noqa: ANN001
    engine, settings = filled
    b, _ = _search(engine, settings, [("_count", "1")])
    event_id = b["entry"][0]["resource"]["id"]
    with read_tx(engine) as conn:
        raw = read_audit(conn, event_id)
        assert read_audit(conn, "no-such-event") is None
    assert raw is not None and orjson.loads(raw)["id"] == event_id
    ctx = RequestContext(requester=IG, interaction="read", resource_type="AuditEvent")
    with read_tx(engine) as conn:
        assert read_audit(conn, event_id, ctx) == raw
    assert [(r.resource_type, r.resource_id) for r in ctx.released] == [("AuditEvent", event_id)]
