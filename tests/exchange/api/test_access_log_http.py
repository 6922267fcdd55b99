"""The access log through the real application (issue 7): authorisation, consent and audit
on, real tokens (exchange.auth.testing.quick_token), SQLite and PostgreSQL.

Checks the stored AuditEvent (its columns, its ``audit_event_patient`` rows and its JSON)
for each kind of interaction, that every patient a request concerns is recorded even when
everything was withheld or the request was refused, that the patient-history report finds
those attempts (by record id and by NHS number), that searches record the SQL narrowing
in force, and that requests refused before authentication are recorded too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.audit.reports import run_report
from exchange.audit.tables import audit_event, audit_event_patient
from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCT = "http://snomed.info/sct"
GP, HOSP, FAR = "LG001", "LH001", "LF001"
NHS_NUMBER = "9449306753"
CLIENT = "access-log-http"


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


@pytest.fixture(scope="module")
def log_settings(settings: Settings) -> Settings:
    return settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=True)


def _token(engine, settings: Settings, **kw: Any) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.cruds")
    kw.setdefault("organization", HOSP)
    return bearer(quick_token(engine, settings, client_id=CLIENT, **kw))


@pytest.fixture(scope="module")
def api(engine, log_settings: Settings) -> Iterator[TestClient]:  # noqa: ANN001
    from exchange.app import create_app

    with TestClient(create_app(log_settings, engine=engine)) as client:
        feed = bearer(quick_token(engine, log_settings, client_id="access-log-feed", kind="system",
                                  scope="system/*.cruds", practitioner=None, role=None, name=None,
                                  purpose=None))

        def put(resource: dict[str, Any]) -> None:
            got = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                             headers=feed)
            assert got.status_code in (200, 201), got.text

        put({"resourceType": "Organization", "id": "lorg-gp",
             "identifier": [{"system": ODS, "value": GP}]})
        for pid in ("lp1", "lp2"):
            patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": "Logson"}],
                                       "generalPractitioner": [{"reference": "Organization/lorg-gp"}]}
            if pid == "lp1":
                patient["identifier"] = [{"system": NHS, "value": NHS_NUMBER}]
            put(patient)
            put({"resourceType": "Encounter", "id": f"lenc-{pid}", "status": "in-progress",
                 "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"},
                 "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}},
                 "period": {"start": _day(-1)}})
            put({"resourceType": "Observation", "id": f"lobs-{pid}", "status": "final",
                 "code": {"coding": [{"system": SCT, "code": "271649006"}]},
                 "subject": {"reference": f"Patient/{pid}"}})
        put({"resourceType": "Observation", "id": "lobs-lp1", "status": "amended",  # version 2
             "code": {"coding": [{"system": SCT, "code": "271649006"}]},
             "subject": {"reference": "Patient/lp1"}})
        put({"resourceType": "Consent", "id": "lc2", "status": "active",
             "scope": {"coding": [{"code": "patient-privacy"}]},
             "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
             "patient": {"reference": "Patient/lp2"},
             "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
                 {"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                       "code": "IRCP"}]},
                  "reference": {"identifier": {"system": ODS, "value": GP}}}]}]}})
        yield client


@dataclass
class Stored:
    row: Any
    patients: list[str]
    event: dict[str, Any]

    def details(self, name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for ent in self.event["entity"]:
            if ent.get("name") == name:
                for d in ent.get("detail", []):
                    out.setdefault(d["type"], []).append(d["valueString"])
        return out


def _head(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(audit_event.c.seq), 0))).scalar_one()


def _after(engine, seq: int) -> list[Stored]:  # noqa: ANN001
    with engine.connect() as conn:
        rows = conn.execute(select(audit_event).where(audit_event.c.seq > seq)
                            .order_by(audit_event.c.seq)).all()
        out = []
        for r in rows:
            pats = conn.execute(select(audit_event_patient.c.patient_id)
                                .where(audit_event_patient.c.seq == r.seq)).scalars().all()
            out.append(Stored(r, sorted(pats), orjson.loads(r.content)))
    return out


def _one_after(engine, seq: int) -> Stored:  # noqa: ANN001
    events = _after(engine, seq)
    assert len(events) == 1, [e.row.subtype for e in events]
    return events[0]


def _history(engine, patient: str) -> list[str]:  # noqa: ANN001
    with engine.connect() as conn:
        rows = run_report(conn, "patient-history", datetime.now(UTC) - timedelta(hours=1),
                          datetime.now(UTC) + timedelta(minutes=1), patient=patient)
    return [r["event_id"] for r in rows]


# -- every patient concerned (gaps-7 #2) -----------------------------------------------

def test_search_consent_hid_everything_records_the_patient(api, engine, log_settings) -> None:  # noqa: ANN001
    far = _token(engine, log_settings, organization=FAR)  # no care relationship with lp1
    seq = _head(engine)
    got = api.get("/fhir/Observation", params={"patient": "lp1"}, headers=far)
    assert got.status_code == 200
    assert [e for e in got.json().get("entry", []) if e["resource"]["resourceType"] == "Observation"] == []
    stored = _one_after(engine, seq)
    assert stored.patients == ["lp1"]
    assert stored.row.event_id in _history(engine, "lp1")
    assert stored.row.event_id in _history(engine, NHS_NUMBER)


@pytest.mark.parametrize(("org", "path", "status", "patient"), [
    (FAR, "/fhir/Observation/lobs-lp1", 403, "lp1"),   # no care relationship: refusal disclosed
    (HOSP, "/fhir/Observation/lobs-lp2", 404, "lp2"),  # the patient's objection: hidden
])
def test_refused_read_records_the_patient_but_never_answers_it(  # noqa: PLR0913
        api, engine, log_settings, org, path, status, patient) -> None:  # noqa: ANN001
    seq = _head(engine)
    got = api.get(path, headers=_token(engine, log_settings, organization=org))
    assert got.status_code == status
    assert got.json()["resourceType"] == "OperationOutcome"
    assert f"Patient/{patient}" not in got.text and f'"{patient}"' not in got.text
    stored = _one_after(engine, seq)
    assert stored.patients == [patient]
    assert stored.row.withheld == 1
    assert stored.row.event_id in _history(engine, patient)


def test_patient_history_by_nhs_number_and_by_id(api, engine, log_settings) -> None:  # noqa: ANN001
    seq = _head(engine)
    assert api.get("/fhir/Patient/lp1", headers=_token(engine, log_settings)).status_code == 200
    event_id = _one_after(engine, seq).row.event_id
    assert event_id in _history(engine, "lp1")
    assert event_id in _history(engine, "Patient/lp1")
    assert event_id in _history(engine, NHS_NUMBER)
    assert event_id in _history(engine, "944 930 6753")
    assert event_id in _history(engine, f"{NHS}|{NHS_NUMBER}")
    assert event_id not in _history(engine, "9999999999")
    assert event_id not in _history(engine, "lp2")


def test_cli_patient_history_by_nhs_number(api, engine, log_settings, capsys, monkeypatch) -> None:  # noqa: ANN001, PLR0913
    from exchange.audit import cli

    seq = _head(engine)
    assert api.get("/fhir/Patient/lp1", headers=_token(engine, log_settings)).status_code == 200
    event_id = _one_after(engine, seq).row.event_id
    monkeypatch.setenv("EXCHANGE_VAR_DIR", str(log_settings.var_dir))
    code = cli.main(["audit", "report", "patient-history", "--patient", NHS_NUMBER, "--format", "json",
                     "--database", log_settings.database_url])
    assert code == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert event_id in [r["event_id"] for r in rows]
    assert all("lp1" in r["patients"].split() for r in rows)


# -- SQL narrowing is recorded as rules in force (gaps-7 #1) -----------------------------

def test_search_records_that_sql_narrowing_applied(api, engine, log_settings) -> None:  # noqa: ANN001
    seq = _head(engine)
    got = api.get("/fhir/Observation", params={"patient": "lp1"},
                  headers=_token(engine, log_settings, organization=FAR))
    assert got.status_code == 200
    stored = _one_after(engine, seq)
    narrowing = stored.details("narrowing")
    assert narrowing["sql-narrowing"] == ["applied"]
    assert "Observation" in narrowing["narrowed-types"][0].split()
    assert stored.row.withheld == 0  # nothing reached the per-resource check: no count
    assert "narrowing" not in got.text and "sql-narrowing" not in got.text


def test_read_records_no_sql_narrowing(api, engine, log_settings) -> None:  # noqa: ANN001
    seq = _head(engine)
    assert api.get("/fhir/Observation/lobs-lp1", headers=_token(engine, log_settings)).status_code == 200
    assert _one_after(engine, seq).details("narrowing") == {}


# -- refused before authentication (gaps-7 #5) ------------------------------------------

@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), [
    ("GET", "/fhir/Patient/lp1", {"Accept": "application/fhir+xml"}, None, 406),
    ("POST", "/fhir/Observation", {"Content-Type": "text/plain"}, b"hello", 415),
    ("POST", "/fhir/Observation", {"Content-Type": "application/fhir+json",
                                   "Content-Length": str(50 * 1024 * 1024)}, b"{}", 413),
])
def test_refused_before_authentication_is_audited_as_unknown(  # noqa: PLR0913
        api, engine, log_settings, method, path, headers, body, status) -> None:  # noqa: ANN001
    seq = _head(engine)
    token = _token(engine, log_settings)
    got = api.request(method, path, headers={**token, **headers}, content=body)
    assert got.status_code == status
    assert got.json()["resourceType"] == "OperationOutcome"
    stored = _one_after(engine, seq)
    assert stored.row.outcome == 4
    assert stored.event["outcomeDesc"].startswith(f"HTTP {status}")
    assert stored.row.client_id == "anonymous"  # the token was never read: requester unknown
    assert stored.row.agent is None and stored.row.organization is None
    assert stored.row.resource_type == path.split("/")[2]
    if path.endswith("/lp1"):
        assert stored.patients == ["lp1"] and stored.row.subtype == "read"
    else:
        assert stored.row.subtype == "create"


def test_refused_before_authentication_when_the_log_fails_is_503(api, engine) -> None:  # noqa: ANN001
    seq = _head(engine)
    api.app.state.audit.inject_failure(True)
    try:
        got = api.get("/fhir/Patient/lp1", headers={"Accept": "application/fhir+xml"})
    finally:
        api.app.state.audit.inject_failure(False)
    assert got.status_code == 503
    assert got.json()["resourceType"] == "OperationOutcome"
    assert _after(engine, seq) == []


# -- event content per interaction (gaps-7 #3) ------------------------------------------

@dataclass
class Case:
    name: str
    method: str
    path: str
    status: int
    subtype: str
    action: str
    patients: list[str]
    token: dict[str, Any] | None = field(default_factory=dict)  # None: a forged token
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    outcome: int = 0
    operation: str | None = None
    released: int | None = None
    withheld: int = 0
    withheld_rule: str | None = None  # prefix of the one rule that withheld
    break_glass: str | None = None
    narrowed: bool = False


def _bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


CASES = [
    Case("unauthenticated", "GET", "/fhir/Patient/lp1", 401, "operation", "E", ["lp1"], token=None,
         outcome=4, released=0),
    Case("scope-refused", "GET", "/fhir/Observation", 403, "search-type", "E", ["lp1"],
         token={"scope": "user/Patient.rs"}, params={"patient": "lp1"}, outcome=4, released=0),
    Case("consent-withheld-read", "GET", "/fhir/Observation/lobs-lp2", 404, "read", "R", ["lp2"],
         outcome=4, released=0, withheld=1, withheld_rule="consent."),
    Case("break-glass-read", "GET", "/fhir/Observation/lobs-lp1", 200, "read", "R", ["lp1"],
         token={"organization": FAR, "purpose": "BTG", "reason": "collapsed in the street"},
         released=1, break_glass="collapsed in the street"),
    Case("vread", "GET", "/fhir/Observation/lobs-lp1/_history/1", 200, "vread", "R", ["lp1"], released=1),
    Case("history", "GET", "/fhir/Observation/lobs-lp1/_history", 200, "history-instance", "R", ["lp1"],
         released=2, narrowed=True),
    Case("batch", "POST", "/fhir", 200, "batch", "E", ["lp1", "lp2"],
         body=_bundle("batch", [{"request": {"method": "GET", "url": "Observation/lobs-lp1"}},
                                {"request": {"method": "GET", "url": "Observation/lobs-lp2"}}]),
         released=1, withheld=1, withheld_rule="consent."),
    Case("transaction", "POST", "/fhir", 200, "transaction", "E", ["lp1"],
         body=_bundle("transaction", [{"fullUrl": "urn:uuid:3f1c8a52-3d5e-4b8e-9a61-0c2b7e4d9f10",
                                       "resource": {"resourceType": "Observation", "status": "final",
                                                    "code": {"coding": [{"system": SCT, "code": "271649006"}]},
                                                    "subject": {"reference": "Patient/lp1"}},
                                       "request": {"method": "POST", "url": "Observation"}}])),
    Case("everything", "GET", "/fhir/Patient/lp1/$everything", 200, "operation", "E", ["lp1"],
         operation="$everything", narrowed=True),
    Case("search", "GET", "/fhir/Observation", 200, "search-type", "E", ["lp1"],
         params={"patient": "lp1", "status": "amended"}, released=1, narrowed=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_event_content_per_interaction(api, engine, log_settings, case: Case) -> None:  # noqa: ANN001
    if case.token is None:
        headers = {"Authorization": "Bearer not.a.token"}
        token_kw: dict[str, Any] = {}
    else:
        token_kw = {"organization": HOSP, "purpose": "TREAT", **case.token}
        headers = _token(engine, log_settings, **token_kw)
    if case.body is not None:
        headers = {**headers, "Content-Type": "application/fhir+json"}
    seq = _head(engine)
    got = api.request(case.method, case.path, params=case.params, headers=headers,
                      content=orjson.dumps(case.body) if case.body is not None else None)
    assert got.status_code == case.status, got.text
    stored = _one_after(engine, seq)
    row, event = stored.row, stored.event

    assert event["type"]["code"] == "rest"
    assert row.subtype == case.subtype and event["subtype"][0]["code"] == case.subtype
    if case.operation:
        assert event["subtype"][1]["code"] == case.operation
    assert row.action == case.action and event["action"] == case.action
    assert row.outcome == case.outcome
    assert event["outcomeDesc"]
    assert stored.patients == case.patients
    assert [e["what"]["reference"] for e in event["entity"] if e["role"]["code"] == "1"] == \
        [f"Patient/{p}" for p in case.patients]
    query = next(e for e in event["entity"] if e["role"]["code"] == "24")
    assert query["description"].startswith(f"{case.method} ")
    if case.released is not None:
        assert row.released == case.released

    # agents: the client system, the exchange, and the user behind the request
    if case.token is None:
        assert row.client_id == "anonymous" and row.agent is None
    else:
        assert row.client_id == CLIENT
        assert row.agent == "555123456789" and row.agent_name == "Dr Test"
        assert row.organization == token_kw["organization"] and row.role == "R8000"
        assert row.purpose == token_kw["purpose"]
        user = next(a for a in event["agent"] if a.get("requestor"))
        assert user["purposeOfUse"][0]["coding"][0]["code"] == token_kw["purpose"]
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == token_kw["purpose"]
    assert sum(1 for a in event["agent"] if a.get("requestor")) <= 1

    # what was withheld, and why
    assert row.withheld == case.withheld
    withheld = stored.details("withheld")
    if case.withheld:
        assert withheld["withheld-count"] == [str(case.withheld)]
        rules = [k for k in withheld if k.startswith("withheld-by:")]
        assert len(rules) == 1 and rules[0].removeprefix("withheld-by:").startswith(case.withheld_rule)
    else:
        assert withheld.get("withheld-count", ["0"]) == ["0"]
    assert bool(stored.details("narrowing")) == case.narrowed

    # break-glass: the reason is in the event
    assert row.break_glass == (case.break_glass is not None)
    if case.break_glass:
        assert row.break_glass_reason == case.break_glass
        assert stored.details("break-glass")["break-glass-reason"] == [case.break_glass]


def test_search_records_the_narrowing_rules_in_force(api, engine, log_settings) -> None:  # noqa: ANN001
    """The consent gate reports which rules its SQL narrowing applied (no count)."""
    seq = _head(engine)
    api.get("/fhir/Observation", params={"patient": "lp1"}, headers=_token(engine, log_settings, organization=FAR))
    rules = set(_one_after(engine, seq).details("narrowing").get("narrowing-rule", []))
    assert {"relationship.none", "label.legally-restricted"} <= rules, rules


def test_batch_entry_search_records_the_patient_it_names(api, engine, log_settings) -> None:  # noqa: ANN001
    far = _token(engine, log_settings, organization=FAR)
    seq = _head(engine)
    got = api.post("/fhir", headers={**far, "content-type": "application/fhir+json"}, json={
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Observation?patient=lp1"}}]})
    assert got.status_code == 200, got.text
    stored = _one_after(engine, seq)
    assert "lp1" in stored.patients
