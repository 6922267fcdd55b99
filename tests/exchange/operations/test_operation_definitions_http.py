"""``GET /fhir/OperationDefinition/{id}`` over HTTP (gaps-6 #7): the definition the
CapabilityStatement names for ``$care-preferences`` is fetchable with a real token;
unknown ids are 404 and writes are 405. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from exchange.auth.testing import bearer, quick_token


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=True)
    with TestClient(create_app(s, engine=engine)) as client:
        client.od_settings = s  # type: ignore[attr-defined]
        yield client


def test_capability_statement_definition_is_fetchable(engine, api) -> None:  # noqa: ANN001
    h = bearer(quick_token(engine, api.od_settings, client_id="od-user", scope="user/Patient.rs"))
    cs = api.get("/fhir/metadata").json()
    (patient,) = [r for r in cs["rest"][0]["resource"] if r["type"] == "Patient"]
    url = next(o["definition"] for o in patient["operation"] if o["name"] == "care-preferences")
    r = api.get(f"/fhir/OperationDefinition/{url.rsplit('/', 1)[1]}", headers=h)
    assert r.status_code == 200, r.text
    od = r.json()
    assert od["resourceType"] == "OperationDefinition" and od["url"] == url and od["code"] == "care-preferences"
    assert r.headers["etag"] == f'W/"{od["version"]}"'


def test_unknown_read_only_and_authenticated(engine, api) -> None:  # noqa: ANN001
    h = bearer(quick_token(engine, api.od_settings, client_id="od-user", scope="user/Patient.rs"))
    assert api.get("/fhir/OperationDefinition/Patient-everything", headers=h).status_code == 404
    assert api.put("/fhir/OperationDefinition/Patient-care-preferences", headers=h,
                   json={"resourceType": "OperationDefinition"}).status_code == 405
    assert api.get("/fhir/OperationDefinition/Patient-care-preferences").status_code == 401
