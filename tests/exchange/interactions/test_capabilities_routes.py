"""The CapabilityStatement's interactions match the route table (R4 capabilitystatement.html,
``rest.resource.interaction`` and ``rest.interaction``), both ways.

* every interaction advertised for a type (or the system) resolves in
  ``exchange.interactions.router.resolve`` to a route of that interaction, and the
  access log's own rule does not refuse it;
* every route the table serves (found by the walk in tests/exchange/api/
  test_openapi_routes.py) is advertised: its interaction for its type, system
  interactions at the system level, operations in ``rest.resource.operation``.
"""

from __future__ import annotations

from exchange.interactions.audit_log import ALLOWED as AUDIT_LOG_INTERACTIONS
from exchange.interactions.router import resolve
from exchange.interactions.types import FhirRequest
from exchange.validation import SERVED_TYPES
from tests.exchange.api.test_openapi_routes import walk_fhir_routes

#: one request per R4 TypeRestfulInteraction / SystemRestfulInteraction code
TYPE_REQUESTS = {
    "read": ("GET", ["{T}", "abc"]),
    "vread": ("GET", ["{T}", "abc", "_history", "1"]),
    "update": ("PUT", ["{T}", "abc"]),
    "patch": ("PATCH", ["{T}", "abc"]),
    "delete": ("DELETE", ["{T}", "abc"]),
    "history-instance": ("GET", ["{T}", "abc", "_history"]),
    "history-type": ("GET", ["{T}", "_history"]),
    "create": ("POST", ["{T}"]),
    "search-type": ("GET", ["{T}"]),
}
SYSTEM_REQUESTS = {
    "transaction": ("POST", []),  # one route: batch or transaction is read from Bundle.type
    "batch": ("POST", []),
    "search-system": ("GET", []),
    "history-system": ("GET", ["_history"]),
}
#: router interaction names that stand for a system interaction code
ROUTED_SYSTEM = {"batch": {"batch", "transaction"}, "search-system": {"search-system"},
                 "history-system": {"history-system"}, "capabilities": set()}


def _statement(client) -> dict:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    return r.json()["rest"][0]


def test_every_advertised_interaction_routes_to_its_handler(client):
    rest = _statement(client)
    assert {e["type"] for e in rest["resource"]} == set(SERVED_TYPES)
    for entry in rest["resource"]:
        rtype = entry["type"]
        for code in (i["code"] for i in entry["interaction"]):
            assert code in TYPE_REQUESTS, (rtype, code)
            method, parts = TYPE_REQUESTS[code]
            route = resolve(FhirRequest(method=method, parts=[rtype if p == "{T}" else p for p in parts]))
            assert route.interaction == code and route.resource_type == rtype, (rtype, code, route)
            assert route.handler is not None
            if rtype == "AuditEvent":
                assert code in AUDIT_LOG_INTERACTIONS, code  # router.authorize would answer 405
    for code in (i["code"] for i in rest["interaction"]):
        assert code in SYSTEM_REQUESTS, code
        method, parts = SYSTEM_REQUESTS[code]
        route = resolve(FhirRequest(method=method, parts=parts))
        assert code in ROUTED_SYSTEM.get(route.interaction, ()), (code, route)


def test_no_routed_interaction_is_missing_from_the_statement(client):
    rest = _statement(client)
    by_type = {e["type"]: {i["code"] for i in e["interaction"]} for e in rest["resource"]}
    ops_by_type = {e["type"]: {o["name"] for o in e.get("operation", [])} for e in rest["resource"]}
    system = {i["code"] for i in rest["interaction"]}
    walked = walk_fhir_routes()
    generic = next(t for t in SERVED_TYPES if f"/fhir/{t}" in {tpl for _, tpl, _ in walked} and t not in ("Patient", "AuditEvent"))
    missing = []
    for method, template, interaction in sorted(walked):
        segments = template.removeprefix("/fhir").strip("/").split("/") if template != "/fhir" else []
        if interaction in ROUTED_SYSTEM:
            if not ROUTED_SYSTEM[interaction] <= system:
                missing.append(f"system {interaction} ({method} {template})")
            continue
        head = segments[0]
        types = [head]
        if head == generic:  # the walk's stand-in for every type the router does not name
            types = [t for t in SERVED_TYPES if t not in ("Patient", "AuditEvent")]
        if template == "/fhir/Patient/{id}/{type}":
            types = list(SERVED_TYPES)  # compartment search is a search of {type}
        for rtype in types:
            if interaction == "operation":
                name = segments[-1].removeprefix("$")
                if name not in ops_by_type.get(rtype, set()):
                    missing.append(f"{rtype} operation ${name} ({method} {template})")
            elif interaction not in by_type.get(rtype, set()):
                missing.append(f"{rtype} {interaction} ({method} {template})")
    assert not missing, "routed but not advertised in the CapabilityStatement:\n" + "\n".join(missing)


def test_access_log_advertises_only_what_it_serves(client):
    entry = next(e for e in _statement(client)["resource"] if e["type"] == "AuditEvent")
    assert {i["code"] for i in entry["interaction"]} == set(AUDIT_LOG_INTERACTIONS)
