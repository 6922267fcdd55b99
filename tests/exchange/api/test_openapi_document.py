"""openapi/openapi.json is the generator's output, and every documented path routes."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from exchange.api.openapi_doc import render
from exchange.interactions.router import resolve
from exchange.interactions.types import FhirRequest

DOC = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"


def test_committed_document_matches_generator():
    assert DOC.read_bytes() == render(), "openapi/openapi.json is stale: run python -m exchange.api.openapi_doc > openapi/openapi.json"


def test_every_documented_fhir_path_is_routed():
    """FHIR paths route in the facade's table; the SMART endpoints under /fhir are the
    auth router's own routes, mounted before the /fhir catch-all (exchange/app.py)."""
    from exchange.auth.routes import router as smart_router

    smart = {r.path: r.methods for r in smart_router.routes}
    doc = orjson.loads(DOC.read_bytes())
    for path, methods in doc["paths"].items():
        if not path.startswith("/fhir"):
            continue
        if path in smart:
            assert {m.upper() for m in methods} <= smart[path], path
            continue
        concrete = re.sub(r"\{id\}", "abc", path)
        concrete = concrete.replace("{vid}", "1").replace("{type}", "Observation")
        parts = [p for p in concrete.removeprefix("/fhir").split("/") if p]
        for method in methods:
            route = resolve(FhirRequest(method=method.upper(), parts=parts))
            assert route.handler is not None, (method, path)


def test_documented_cds_paths_exist(client):
    doc = orjson.loads(DOC.read_bytes())
    assert client.get("/cds-services").status_code == 200
    assert "/cds-services/care-preferences-patient-view" in doc["paths"]
    r = client.post("/cds-services/care-preferences-patient-view", json={})
    assert r.status_code != 404


def test_served_document_is_the_committed_one(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.content == DOC.read_bytes()


def test_document_does_not_depend_on_custom_search_parameters_registered_at_run_time():
    from exchange.search.registry import register_search_parameter

    register_search_parameter({
        "resourceType": "SearchParameter", "url": "https://example.org/sp/patient-nickname-test",
        "code": "nickname-openapi-test", "base": ["Patient"], "type": "string",
        "expression": "Patient.name.given", "status": "active"})
    assert render() == DOC.read_bytes()
