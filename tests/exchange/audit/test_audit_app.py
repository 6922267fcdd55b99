"""The access log through the running app, on databases built by the real migrations.

No access without a record: with an injected audit failure the response is 503 and
carries no data. Uses the shared ``engine``/``settings`` fixtures (migrated to head,
so the 0002 append-only triggers are in place).
"""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from exchange.audit.tables import audit_event, audit_event_patient
from exchange.audit.verify import verify


@pytest.fixture(scope="module")
def audited(engine, settings):  # noqa: ANN001, ANN201
    from exchange.app import create_app

    s = settings.with_(audit_enabled=True)
    app = create_app(s, engine=engine)
    with TestClient(app) as c:
        yield c, app, s


def _events(engine) -> list:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(audit_event).order_by(audit_event.c.seq)).all()


def test_read_is_recorded_before_the_response(audited, engine) -> None:  # noqa: ANN001
    client, app, _ = audited
    put = client.put("/fhir/Patient/aud1", json={"resourceType": "Patient", "id": "aud1",
                                                 "name": [{"family": "Smith"}]})
    assert put.status_code in (200, 201), put.text
    before = len(_events(engine))
    got = client.get("/fhir/Patient/aud1")
    assert got.status_code == 200
    rows = _events(engine)
    assert len(rows) == before + 1
    last = rows[-1]
    assert last.subtype == "read" and last.action == "R" and last.outcome == 0
    with engine.connect() as conn:
        pats = conn.execute(select(audit_event_patient.c.patient_id)
                            .where(audit_event_patient.c.seq == last.seq)).scalars().all()
    assert pats == ["aud1"]
    event = orjson.loads(last.content)
    assert any(e.get("what", {}).get("reference", "").startswith("Patient/aud1/_history/")
               for e in event["entity"])


def test_injected_audit_failure_gives_503_and_no_data(audited, engine) -> None:  # noqa: ANN001
    client, app, _ = audited
    before = len(_events(engine))
    app.state.audit.inject_failure(True)
    try:
        got = client.get("/fhir/Patient/aud1")
    finally:
        app.state.audit.inject_failure(False)
    assert got.status_code == 503
    body = got.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Smith" not in got.text and "aud1" not in got.text
    assert len(_events(engine)) == before
    assert client.get("/fhir/Patient/aud1").status_code == 200


def test_search_of_the_log_is_itself_audited(audited, engine) -> None:  # noqa: ANN001
    client, _, _ = audited
    got = client.get("/fhir/AuditEvent", params={"patient": "aud1"})
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert bundle["type"] == "searchset" and bundle["total"] >= 1
    last = _events(engine)[-1]
    assert last.resource_type == "AuditEvent" and last.subtype == "search-type"


def test_migrated_triggers_refuse_changes_and_chain_verifies(audited, engine) -> None:  # noqa: ANN001
    _, _, settings = audited
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET outcome = 8"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_event)).scalar() > 0
    result = verify(engine, settings)
    assert result.ok, result.summary()


def _stored(engine, rtype: str, rid: str) -> bool:  # noqa: ANN001
    from exchange.db.tables import resource_current as rc

    with engine.connect() as conn:
        return conn.execute(select(rc.c.rid).where(rc.c.res_type == rtype, rc.c.res_id == rid)).first() is not None


def test_write_and_its_record_commit_together(audited, engine) -> None:  # noqa: ANN001
    """A write's AuditEvent is appended in the write's own transaction: one event, and
    it is in the log as soon as the write is."""
    client, _, _ = audited
    before = len(_events(engine))
    r = client.put("/fhir/Patient/aud-w1", json={"resourceType": "Patient", "id": "aud-w1"})
    assert r.status_code == 201, r.text
    rows = _events(engine)
    assert len(rows) == before + 1
    assert rows[-1].subtype == "update" and rows[-1].outcome == 0
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Patient/aud-w2"}, "resource": {"resourceType": "Patient", "id": "aud-w2"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    rows = _events(engine)
    assert len(rows) == before + 2 and rows[-1].subtype == "transaction"


@pytest.mark.parametrize("how", ["update", "create", "transaction"])
def test_write_refused_with_503_when_its_record_cannot_be_written_stores_nothing(audited, engine, how) -> None:  # noqa: ANN001
    """No write is stored unrecorded, and none is stored behind a 503 (a client retrying a
    refused POST must not make a duplicate)."""
    client, app, _ = audited
    rid = f"aud-fail-{how}"
    before = len(_events(engine))
    app.state.audit.inject_failure(True)
    try:
        if how == "update":
            r = client.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid})
        elif how == "create":
            r = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
                {"system": "urn:test", "value": rid}]})
        else:
            r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "PUT", "url": f"Patient/{rid}"},
                 "resource": {"resourceType": "Patient", "id": rid}}]})
    finally:
        app.state.audit.inject_failure(False)
    assert r.status_code == 503, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and r.headers.get("retry-after")
    assert len(_events(engine)) == before
    if how == "create":
        got = client.get("/fhir/Patient", params={"identifier": f"urn:test|{rid}"}).json()
        assert not [e for e in got.get("entry", []) if e["search"]["mode"] == "match"]
    else:
        assert not _stored(engine, "Patient", rid)
