"""Build the OpenAPI 3 document of the FHIR facade from the route table's shape.

``openapi/openapi.json`` is this function's output, committed; tests regenerate it and
fail on any drift, check every documented path against the running app, and check the
reverse: every route the app serves (its own routes and every shape the FHIR route
table resolves) is documented (tests/exchange/api/test_openapi_document.py).
Regenerate with ``python -m exchange.api.openapi_doc > openapi/openapi.json``.

Not documented: the IG console under ``/ig`` (server-rendered HTML for people, mounted
with ``include_in_schema=False``), and ``HEAD``, which answers like ``GET`` (R4
http.html#read).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from exchange import __version__
from exchange.operations.registry import OPERATIONS
from exchange.validation import SERVED_TYPES

RES = {"$ref": "#/components/schemas/Resource"}
OO = {"$ref": "#/components/schemas/OperationOutcome"}
BUNDLE = {"$ref": "#/components/schemas/Bundle"}
FHIR_JSON = "application/fhir+json"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {400: "Invalid request", 401: "Not authenticated", 403: "Not permitted", 404: "Not found",
             405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 410: "Deleted",
             412: "Precondition failed", 413: "Too large", 415: "Unsupported media type",
             422: "Unprocessable", 503: "Unavailable (database or access log)"}
    return {str(c): _json(OO, texts[c]) for c in codes}


def _param(name: str, where: str = "query", required: bool = False, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}, "description": description}


def _search_params(rtype: str) -> list[dict[str, Any]]:
    from exchange.search.registry import builtin_param_names

    names = builtin_param_names(rtype)
    common = ["_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"]
    return [_param(n) for n in sorted(set(names) | set(common))]


COMMON_ERRORS = (400, 401, 403, 406, 503)
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _plain(schema: dict[str, Any], description: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _form_body(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    props = {k: {"type": "string", "description": d} for k, d in fields.items()}
    return {"required": True, "content": {FORM: {"schema": {"type": "object", "properties": props, "required": required}}}}


def _smart_paths() -> dict[str, Any]:
    """SMART App Launch 2.x discovery and the OAuth endpoints (exchange/auth/routes.py).

    Errors of the token and introspection endpoints are RFC 6749 §5.2 JSON objects,
    not OperationOutcomes: OAuth clients expect that shape.
    """
    oauth_error = {"$ref": "#/components/schemas/OAuthError"}
    assertion_fields = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer (RFC 7523 §2.2)",
        "client_assertion": "The client's signed JWT (SMART Backend Services, private_key_jwt)",
    }
    token_fields = {
        "grant_type": "client_credentials, or urn:ietf:params:oauth:grant-type:jwt-bearer for a user assertion (RFC 7523 §2.1)",
        "scope": "Requested SMART scopes, space separated",
        **assertion_fields,
        "assertion": "The user assertion (jwt-bearer grant only)",
    }
    introspect_fields = {"token": "The access token to introspect (RFC 7662 §2.1)", "client_id": "The client's id", **assertion_fields}
    token_response = {"type": "object", "required": ["access_token", "token_type", "expires_in"],
                      "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                                     "expires_in": {"type": "integer"}, "scope": {"type": "string"}}}
    return {
        "/fhir/.well-known/smart-configuration": {"get": {
            "summary": "SMART configuration (SMART App Launch 2.x conformance)", "operationId": "smartConfiguration",
            "security": [], "responses": {"200": _plain({"type": "object"}, "SMART configuration")}}},
        "/fhir/.well-known/jwks.json": {"get": {
            "summary": "The exchange's public token-signing keys (RFC 7517 JWK Set)", "operationId": "jwks",
            "security": [], "responses": {"200": _plain({"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
                                                        "JWK Set")}}},
        "/fhir/auth/token": {"post": {
            "summary": "Token endpoint (RFC 6749 §3.2; client authenticated by private_key_jwt)", "operationId": "token",
            "security": [], "requestBody": _form_body(token_fields, ["grant_type", "client_assertion_type", "client_assertion"]),
            "responses": {"200": _plain(token_response, "Access token"), "400": _plain(oauth_error, "Invalid request (RFC 6749 §5.2)"),
                          "401": _plain(oauth_error, "Client authentication failed (RFC 6749 §5.2)")}}},
        "/fhir/auth/introspect": {"post": {
            "summary": "Token introspection (RFC 7662); authenticated by a bearer token or a client assertion",
            "operationId": "introspect", "security": [{"smart": []}, {}],
            "requestBody": _form_body(introspect_fields, ["token"]),
            "responses": {"200": _plain({"type": "object", "required": ["active"], "properties": {"active": {"type": "boolean"}}},
                                        "Introspection response (RFC 7662 §2.2)"),
                          "400": _plain(oauth_error, "Invalid request (RFC 6749 §5.2)"),
                          "401": _plain(oauth_error, "Not authenticated")}}},
    }


def build() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    id_p = _param("id", "path", True, "Logical id")
    vid_p = _param("vid", "path", True, "Version id")
    paths["/fhir/metadata"] = {"get": {"summary": "CapabilityStatement", "security": [],
                                       "responses": {"200": _json(RES, "CapabilityStatement")}}}
    paths["/fhir"] = {
        "get": {"summary": "System search (_type)", "parameters": [_param("_type"), _param("_count")],
                "responses": {"200": _json(BUNDLE, "searchset"), **_errors(*COMMON_ERRORS)}},
        "post": {"summary": "batch or transaction", "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": BUNDLE}}},
                 "responses": {"200": _json(BUNDLE, "batch-response / transaction-response"), **_errors(*COMMON_ERRORS, 404, 409, 412, 413, 415, 422)}},
    }
    paths["/fhir/_search"] = {"post": {
        "summary": "System search (form body)", "operationId": "searchSystemPost",
        "requestBody": {"required": False, "content": {FORM: {"schema": {"type": "object"}}}},
        "responses": {"200": _json(BUNDLE, "searchset"), **_errors(*COMMON_ERRORS, 415)}}}
    paths["/fhir/_history"] = {"get": {"summary": "System history", "parameters": [_param("_count"), _param("_since")],
                                       "responses": {"200": _json(BUNDLE, "history"), **_errors(*COMMON_ERRORS)}}}
    for rtype in SERVED_TYPES:
        base = f"/fhir/{rtype}"
        body = {"required": True, "content": {FHIR_JSON: {"schema": RES}}}
        read_only = rtype == "AuditEvent"
        type_ops: dict[str, Any] = {
            "get": {"summary": f"Search {rtype}", "operationId": f"search{rtype}", "parameters": _search_params(rtype),
                    "responses": {"200": _json(BUNDLE, "searchset"), **_errors(*COMMON_ERRORS)}},
        }
        if not read_only:
            type_ops["post"] = {"summary": f"Create {rtype}", "operationId": f"create{rtype}",
                                "parameters": [_param("If-None-Exist", "header")], "requestBody": body,
                                "responses": {"201": _json(RES, "Created"), "200": _json(RES, "Exists (conditional create)"),
                                              **_errors(*COMMON_ERRORS, 412, 413, 415)}}
            type_ops["put"] = {"summary": f"Conditional update {rtype} (search parameters select the target)",
                               "operationId": f"conditionalUpdate{rtype}", "requestBody": body,
                               "responses": {"200": _json(RES, "Updated"), "201": _json(RES, "Created"),
                                             **_errors(*COMMON_ERRORS, 412, 413, 415)}}
            type_ops["delete"] = {"summary": f"Conditional delete {rtype} (a single match)",
                                  "operationId": f"conditionalDelete{rtype}",
                                  "responses": {"204": {"description": "Deleted"}, **_errors(*COMMON_ERRORS, 412)}}
        paths[base] = type_ops
        paths[f"{base}/_search"] = {"post": {
            "summary": f"Search {rtype} (form body)", "operationId": f"searchPost{rtype}",
            "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
            "responses": {"200": _json(BUNDLE, "searchset"), **_errors(*COMMON_ERRORS, 415)}}}
        if not read_only:
            paths[f"{base}/_history"] = {"get": {"summary": f"{rtype} type history", "operationId": f"history{rtype}",
                                                 "parameters": [_param("_count"), _param("_since")],
                                                 "responses": {"200": _json(BUNDLE, "history"), **_errors(*COMMON_ERRORS)}}}
        inst: dict[str, Any] = {"get": {"summary": f"Read {rtype}", "operationId": f"read{rtype}", "parameters": [id_p],
                                        "responses": {"200": _json(RES, rtype), "304": {"description": "Not modified"},
                                                      **_errors(*COMMON_ERRORS, 404, 410)}}}
        if not read_only:
            inst["put"] = {"summary": f"Update {rtype}", "operationId": f"update{rtype}",
                           "parameters": [id_p, _param("If-Match", "header")], "requestBody": body,
                           "responses": {"200": _json(RES, "Updated"), "201": _json(RES, "Created"),
                                         **_errors(*COMMON_ERRORS, 409, 412, 413, 415)}}
            inst["patch"] = {"summary": f"JSON Patch {rtype}", "operationId": f"patch{rtype}",
                             "parameters": [id_p, _param("If-Match", "header")],
                             "requestBody": {"required": True, "content": {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                             "responses": {"200": _json(RES, "Patched"), **_errors(*COMMON_ERRORS, 404, 412, 415, 422)}}
            inst["delete"] = {"summary": f"Delete {rtype}", "operationId": f"delete{rtype}",
                              "parameters": [id_p, _param("If-Match", "header")],
                              "responses": {"204": {"description": "Deleted"}, **_errors(*COMMON_ERRORS, 404, 412)}}
            paths[f"{base}/{{id}}/_history"] = {"get": {"summary": f"{rtype} instance history", "operationId": f"historyInstance{rtype}",
                                                        "parameters": [id_p, _param("_count"), _param("_since")],
                                                        "responses": {"200": _json(BUNDLE, "history"), **_errors(*COMMON_ERRORS)}}}
            paths[f"{base}/{{id}}/_history/{{vid}}"] = {"get": {"summary": f"vread {rtype}", "operationId": f"vread{rtype}",
                                                                "parameters": [id_p, vid_p],
                                                                "responses": {"200": _json(RES, rtype), **_errors(*COMMON_ERRORS, 404, 410)}}}
        paths[f"{base}/{{id}}"] = inst
    for op in OPERATIONS:
        path = f"/fhir/{op.resource_type}/{{id}}/${op.name}" if op.instance else f"/fhir/{op.resource_type}/${op.name}"
        entry = {}
        for m in op.methods:
            spec: dict[str, Any] = {"summary": f"${op.name}", "operationId": f"op{op.name.title().replace('-', '')}{m.title()}{'Instance' if op.instance else ''}",
                                    "responses": {"200": _json(RES, "Result"), **_errors(*COMMON_ERRORS, 404)}}
            if op.instance:
                spec["parameters"] = [id_p]
            if m == "POST":
                spec["requestBody"] = {"required": True, "content": {FHIR_JSON: {"schema": RES}}}
            entry[m.lower()] = spec
        paths[path] = entry
        if op.instance and op.type_level:
            type_entry: dict[str, Any] = {}
            for m in op.methods:
                spec = {"summary": f"${op.name} (type level)",
                        "operationId": f"op{op.name.title()}Type" + ("" if m == "GET" else m.title()),
                        "responses": {"200": _json(RES, "Result"), **_errors(*COMMON_ERRORS)}}
                if m == "POST":
                    spec["requestBody"] = {"required": False, "content": {FHIR_JSON: {"schema": RES}}}
                type_entry[m.lower()] = spec
            paths[f"/fhir/{op.resource_type}/${op.name}"] = type_entry
    paths["/fhir/OperationDefinition/{id}"] = {"get": {
        "summary": "Read one of the exchange's own OperationDefinitions (the canonical URL's last segment is the id)",
        "operationId": "readOperationDefinition", "parameters": [id_p],
        "responses": {"200": _json(RES, "OperationDefinition"), **_errors(401, 404, 405, 406, 503)}}}
    paths["/fhir/Patient/{id}/{type}"] = {"get": {
        "summary": "Compartment search", "operationId": "compartmentSearch",
        "parameters": [id_p, {"name": "type", "in": "path", "required": True, "schema": {"type": "string", "enum": list(SERVED_TYPES)}}],
        "responses": {"200": _json(BUNDLE, "searchset"), **_errors(*COMMON_ERRORS)}}}
    paths.update(_smart_paths())
    paths["/openapi.json"] = {"get": {"summary": "This OpenAPI document", "operationId": "openapi", "security": [],
                                      "responses": {"200": _plain({"type": "object"}, "OpenAPI 3 document")}}}
    paths["/healthz"] = {"get": {"summary": "Liveness probe", "operationId": "healthz", "security": [],
                                 "responses": {"200": _plain({"type": "object", "properties": {"status": {"type": "string"}}}, "Alive")}}}
    paths["/cds-services"] = {"get": {"summary": "CDS Hooks discovery", "operationId": "cdsDiscovery", "security": [],
                                      "responses": {"200": {"description": "CDS services", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    paths["/cds-services/care-preferences-patient-view"] = {"post": {
        "summary": "CDS Hooks patient-view: resuscitation and end-of-life preference cards",
        "operationId": "cdsCarePreferencesPatientView",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "Cards", "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(400, 401, 403, 503)}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Integrated care record exchange: FHIR R4 facade", "version": __version__,
                 "description": "FHIR R4 (4.0.1) REST API. Every error is an OperationOutcome. "
                                "Authorisation: SMART on FHIR bearer tokens (see /fhir/.well-known/smart-configuration)."},
        "servers": [{"url": "/"}],
        "security": [{"smart": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"smart": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "OAuthError": {"type": "object", "required": ["error"],
                               "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}},
                "Resource": {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}}},
                "Bundle": {"type": "object", "required": ["resourceType", "type"],
                           "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]}, "type": {"type": "string"},
                                          "entry": {"type": "array", "items": {"type": "object"}}}},
                "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"],
                                     "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                                                    "issue": {"type": "array", "minItems": 1, "items": {
                                                        "type": "object", "required": ["severity", "code"],
                                                        "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                                                                       "diagnostics": {"type": "string"},
                                                                       "expression": {"type": "array", "items": {"type": "string"}}}}}}},
            },
        },
    }


def render() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render())
