"""``Flag?patient=X&status=active`` (issue 6): the exchange's built-in ``Flag.status``
token parameter (``exchange/data/search-parameters-exchange.json``; R4 defines no Flag
``status`` search parameter), indexed at write time, advertised in the
CapabilityStatement and the OpenAPI document, answered over HTTP with real tokens and
the consent layer on. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "operations"))

from eol_fixtures import flag, observation  # noqa: E402

from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.repository import store  # noqa: E402

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP, HOSP = "FS001", "FH001"
URL = "https://exchange.example.nhs.uk/fhir/SearchParameter/flag-status"
OPENAPI = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"


def _put(engine, res: dict) -> None:  # noqa: ANN001
    from consent.facts import index_facts
    from consent.labels import apply_labels

    res = apply_labels(dict(res))
    with write_tx(engine) as conn:
        cur = store.lock_current(conn, res["resourceType"], res["id"])
        stored = store.write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur)
        index_facts(conn, stored.rid, res["resourceType"], res)


def _patient_world(pid: str, *, objection: bool) -> list[dict]:
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    out = [
        {"resourceType": "Patient", "id": pid, "generalPractitioner": [{"reference": "Organization/fs-gp"}]},
        {"resourceType": "Encounter", "id": f"{pid}-enc", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": f"Patient/{pid}"}, "period": {"start": day},
         "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}},
        flag(f"{pid}-dnacpr-gp", "450476008", patient=pid, source="GP", start="2025-03-01"),
        flag(f"{pid}-dnacpr-hosp", "304253006", patient=pid, source="Hospital", start="2025-04-01"),
        flag(f"{pid}-cancelled", "450476008", patient=pid, source="GP", status="inactive", start="2024-01-01"),
        flag(f"{pid}-error", "450476008", patient=pid, source="GP", status="entered-in-error"),
        observation(f"{pid}-bp", "75367002", value="150/90", patient=pid),
    ]
    if objection:
        out.append({"resourceType": "Consent", "id": f"{pid}-objection", "status": "active",
                    "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": f"Patient/{pid}"},
                    "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
                        {"reference": {"identifier": {"system": ODS, "value": GP}}}]}]}})
    return out


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    _put(engine, {"resourceType": "Organization", "id": "fs-gp", "identifier": [{"system": ODS, "value": GP}]})
    for res in _patient_world("fs-open", objection=False) + _patient_world("fs-objects", objection=True):
        _put(engine, res)
    with TestClient(create_app(s, engine=engine)) as client:
        client.fs_settings = s  # type: ignore[attr-defined]
        yield client


def _hospital(engine, api) -> dict[str, str]:  # noqa: ANN001
    return bearer(quick_token(engine, api.fs_settings, client_id="flag-status-hosp", scope="user/*.rs",
                              organization=HOSP))


def _ids(r) -> set[str]:  # noqa: ANN001
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def test_active_flags_only(engine, api) -> None:  # noqa: ANN001
    h = _hospital(engine, api)
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status=active", headers=h)) == {
        "fs-open-dnacpr-gp", "fs-open-dnacpr-hosp"}
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status=inactive", headers=h)) == {"fs-open-cancelled"}
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status:not=active", headers=h)) == {
        "fs-open-cancelled", "fs-open-error"}
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status=|active", headers=h)) == {
        "fs-open-dnacpr-gp", "fs-open-dnacpr-hosp"}  # a code element is indexed without a system
    assert _ids(api.get("/fhir/Flag?patient=fs-open", headers=h)) == {
        "fs-open-dnacpr-gp", "fs-open-dnacpr-hosp", "fs-open-cancelled", "fs-open-error"}


def test_dnacpr_flags_returned_under_an_objection(engine, api) -> None:  # noqa: ANN001
    h = _hospital(engine, api)
    r = api.get("/fhir/Flag?patient=fs-objects&status=active", headers=h)
    assert _ids(r) == {"fs-objects-dnacpr-gp", "fs-objects-dnacpr-hosp"}
    # the rest of the record is still withheld from this clinician
    assert _ids(api.get("/fhir/Observation?patient=fs-objects", headers=h)) == set()


def test_advertised_in_capability_statement_and_openapi(api) -> None:  # noqa: ANN001
    cs = api.get("/fhir/metadata").json()
    (flag_res,) = [r for r in cs["rest"][0]["resource"] if r["type"] == "Flag"]
    (sp,) = [p for p in flag_res["searchParam"] if p["name"] == "status"]
    assert sp == {"name": "status", "type": "token", "definition": URL, "documentation": sp["documentation"]}
    doc = orjson.loads(OPENAPI.read_bytes())
    assert "status" in {p["name"] for p in doc["paths"]["/fhir/Flag"]["get"]["parameters"]}


def test_built_in_definition_is_a_valid_search_parameter() -> None:
    from fhir.resources.R4B.bundle import Bundle

    from exchange.search.registry import DATA_DIR, builtin_param_names, get_param

    bundle = Bundle.parse_raw((DATA_DIR / "search-parameters-exchange.json").read_bytes())
    (entry,) = bundle.entry
    assert entry.resource.url == URL and entry.fullUrl == URL
    assert get_param("Flag", "status").url == URL
    assert "status" in builtin_param_names("Flag")
    assert get_param("Patient", "status") is None  # based on Flag only


def test_reindex_indexes_flags_written_before_the_parameter_existed(engine, api) -> None:  # noqa: ANN001
    """An upgraded database: Flags written by a version without the parameter have no
    ``status`` rows until ``exchange search reindex --type Flag`` (docs/search.md)."""
    from sqlalchemy import delete

    from exchange.search.indexer import reindex
    from exchange.search.tables import search_token

    with write_tx(engine) as conn:  # what an older version left behind
        conn.execute(delete(search_token).where(search_token.c.res_type == "Flag", search_token.c.param == "status"))
    h = _hospital(engine, api)
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status=active", headers=h)) == set()
    assert reindex(engine, "Flag") >= 8
    assert _ids(api.get("/fhir/Flag?patient=fs-open&status=active", headers=h)) == {
        "fs-open-dnacpr-gp", "fs-open-dnacpr-hosp"}
