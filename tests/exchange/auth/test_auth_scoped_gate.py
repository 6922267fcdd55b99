"""The token's scopes hold on every path out (exchange/auth/scoped_gate.py): includes,
$everything, history and system searches release only types the token may read,
granular v2 constraints apply to them all, and totals never count what was held back."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.app import create_app
from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

F = {"content-type": "application/fhir+json"}
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture(scope="module", params=[True, False], ids=["consent", "no-consent"])
def world(request: pytest.FixtureRequest, engine: Engine, db_url: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    s = Settings(database_url=db_url, base_url="http://testserver/fhir", var_dir=Path(tmp_path_factory.mktemp("var")),
                 auth_enabled=True, consent_enabled=request.param, audit_enabled=False, secret_key="x")
    client = TestClient(create_app(s, engine=engine))
    tag = uuid.uuid4().hex[:6]
    pid = f"sg-{tag}"

    def token(scope: str) -> dict:
        return bearer(quick_token(engine, s, kind="system", scope=scope, practitioner=None, role=None,
                                  purpose=None, client_id=f"sg-{uuid.uuid4().hex[:8]}"))

    admin = token("system/*.cruds")
    assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                      headers={**F, **admin}).status_code in (200, 201)
    for i, cat in enumerate(["laboratory", "vital-signs"]):
        r = client.put(f"/fhir/Observation/{pid}-o{i}", headers={**F, **admin}, json={
            "resourceType": "Observation", "id": f"{pid}-o{i}", "status": "final",
            "category": [{"coding": [{"system": CAT, "code": cat}]}], "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"}})
        assert r.status_code in (200, 201), r.text
    return client, token, pid


def _ids(r) -> list[str]:  # noqa: ANN001
    assert r.status_code == 200, r.text
    return sorted(f'{e["resource"]["resourceType"]}/{e["resource"]["id"]}' for e in r.json().get("entry", [])
                  if "resource" in e and e["resource"]["resourceType"] != "OperationOutcome")


def test_type_scope_holds_on_includes_everything_and_system_search(world) -> None:  # noqa: ANN001
    client, token, pid = world
    patient_only = token("system/Patient.rs")
    assert client.get("/fhir/Observation", headers=patient_only).status_code == 403
    assert _ids(client.get(f"/fhir/Patient?_id={pid}&_revinclude=Observation:subject", headers=patient_only)) == [
        f"Patient/{pid}"]
    assert _ids(client.get(f"/fhir/Patient/{pid}/$everything", headers=patient_only)) == [f"Patient/{pid}"]
    # a system search naming only readable types is a search of those types
    assert _ids(client.get(f"/fhir?_type=Patient&_id={pid}", headers=patient_only)) == [f"Patient/{pid}"]
    assert client.get("/fhir?_type=Patient,Observation", headers=patient_only).status_code == 403


def test_granular_scope_holds_on_every_path(world) -> None:  # noqa: ANN001
    client, token, pid = world
    lab = token("system/Patient.rs system/Observation.rs?category=laboratory")
    lab_only = [f"Observation/{pid}-o0"]
    assert client.get(f"/fhir/Observation/{pid}-o1", headers=lab).status_code == 403
    assert _ids(client.get(f"/fhir/Observation?subject=Patient/{pid}", headers=lab)) == lab_only
    assert _ids(client.get(f"/fhir/Observation/{pid}-o1/_history", headers=lab)) == []
    history = client.get("/fhir/Observation/_history", headers=lab)
    assert f"Observation/{pid}-o1" not in _ids(history)
    revinc = client.get(f"/fhir/Patient?_id={pid}&_revinclude=Observation:subject", headers=lab)
    assert _ids(revinc) == sorted([*lab_only, f"Patient/{pid}"])
    everything = client.get(f"/fhir/Patient/{pid}/$everything", headers=lab)
    assert _ids(everything) == sorted([*lab_only, f"Patient/{pid}"])
    # totals count only what the token may see
    counted = client.get(f"/fhir/Observation?subject=Patient/{pid}&_total=accurate", headers=lab).json()
    assert counted["total"] == 1


def test_unrestricted_tokens_keep_the_plain_gate() -> None:
    from exchange.auth.scoped_gate import ScopedGate, scoped_gate
    from exchange.pipeline.context import Requester
    from exchange.pipeline.disclosure import PermitAll

    inner = PermitAll()
    everything = Requester(kind="system", client_id="c", scopes=frozenset({"system/*.rs"}))
    assert scoped_gate(inner, everything) is inner
    some = Requester(kind="system", client_id="c", scopes=frozenset({"system/Patient.rs"}))
    assert isinstance(scoped_gate(inner, some), ScopedGate)
    granular = Requester(kind="system", client_id="c", scopes=frozenset({"system/*.rs?category=x"}))
    assert isinstance(scoped_gate(inner, granular), ScopedGate)
