"""The reverse of test_openapi_document.py: every route the app serves is documented.

Two sources of routes: the app's own routes (``app.routes``: SMART, CDS Hooks, the
OpenAPI document, the health probe) and the FHIR facade's route table
(``exchange.interactions.router.resolve``), which is a function, so it is walked: every
path of up to four segments built from the words ``resolve`` compares segments with
(read from its source), the registered operations, one type the router does not name
(standing for every such served type) and an id / version id, under every method.

Not documented by design (exchange/api/openapi_doc.py): the IG console under ``/ig``
(HTML for people, ``include_in_schema=False``) and ``HEAD`` (answers as ``GET``).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

import orjson
from starlette.routing import Route as StarletteRoute

from exchange.interactions import router
from exchange.interactions.audit_log import ALLOWED as AUDIT_LOG_INTERACTIONS
from exchange.interactions.types import FhirRequest
from exchange.operations.registry import OPERATIONS, available
from exchange.outcome import FhirError
from exchange.validation import SERVED_TYPES

DOC = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FHIR_CATCH_ALL = {"/fhir", "/fhir/{path:path}"}
ID, VID = "abc", "1"


def _documented() -> dict[str, set[str]]:
    doc = orjson.loads(DOC.read_bytes())
    return {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()}


def _router_words() -> set[str]:
    """Path words ``resolve`` tests segments against: string constants in comparisons
    (``==``, ``in``) and ``startswith`` prefixes, minus the HTTP method names."""
    tree = ast.parse(inspect.getsource(router.resolve))
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    words.add(side.value)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "startswith":
            words.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return {w for w in words if w and w not in (*METHODS, "HEAD")}


def _generic_type() -> str:
    named = _router_words()
    return next(t for t in SERVED_TYPES if t not in named)


def _operation_served(route: router.Route, method: str) -> bool:
    """The operations table (exchange/operations/registry.py) decides which routed
    ``$name`` paths run; every other one answers 404 or 405."""
    name = (route.operation or "").lstrip("$")
    instance = route.resource_id is not None
    return any(op.name == name and op.resource_type == route.resource_type and method in op.methods
               and (op.instance if instance else op.type_level) for op in available())


def _template(parts: list[str], route: router.Route) -> str:
    out = list(parts)
    if route.resource_id is not None and len(out) > 1 and out[1] == route.resource_id:
        out[1] = "{id}"
    if route.interaction == "vread":
        out[3] = "{vid}"
    if route.interaction == "search-type" and len(out) == 3:
        out[1], out[2] = "{id}", "{type}"  # compartment search: Patient/{id}/{type}
    return "/fhir" + "".join("/" + p for p in out)


def walk_fhir_routes() -> set[tuple[str, str, str]]:
    """(method, documented path template, interaction) of every served FHIR route."""
    generic = _generic_type()
    words = {w for w in _router_words() if not w.startswith("$")} | {"$" + op.name for op in OPERATIONS} | {"$no-such-op"}
    vocab = [
        sorted(words | {generic}),
        sorted(words | {ID}),
        sorted(words | {generic}),
        sorted(words | {VID}),
    ]
    served: set[tuple[str, str, str]] = set()
    for n in range(5):
        for parts in itertools.product(*vocab[:n]):
            for method in METHODS:
                try:
                    route = router.resolve(FhirRequest(method=method, parts=list(parts)))
                except FhirError:
                    continue
                if route.interaction == "operation" and not _operation_served(route, method):
                    continue
                if route.resource_type == "AuditEvent" and route.interaction not in AUDIT_LOG_INTERACTIONS:
                    continue  # router.authorize: the access log is read-only (405)
                served.add((method, _template(list(parts), route), route.interaction))
    return served


def _expand(template: str) -> list[str]:
    """A template found with the stand-in type holds for every type the router does not name."""
    generic = _generic_type()
    prefix = f"/fhir/{generic}"
    if template == prefix or template.startswith(prefix + "/"):
        named = _router_words()
        return [f"/fhir/{t}{template[len(prefix):]}" for t in SERVED_TYPES if t not in named]
    return [template]


def test_the_walk_finds_every_kind_of_fhir_route():
    """Guards the walk itself: were the vocabulary wrong, the test below would pass vacuously."""
    interactions = {i for _, _, i in walk_fhir_routes()}
    assert interactions >= {"search-system", "batch", "capabilities", "history-system", "search-type", "create",
                            "update", "delete", "read", "patch", "history-type", "history-instance", "vread",
                            "operation"}


def test_every_served_fhir_route_is_documented():
    documented = _documented()
    missing = []
    for method, template, interaction in sorted(walk_fhir_routes()):
        for path in _expand(template):
            if method not in documented.get(path, set()):
                missing.append(f"{method} {path} ({interaction})")
    assert not missing, "served but not in openapi/openapi.json:\n" + "\n".join(missing)


def test_compartment_template_lists_every_served_type():
    doc = orjson.loads(DOC.read_bytes())
    params = doc["paths"]["/fhir/Patient/{id}/{type}"]["get"]["parameters"]
    enum = next(p["schema"]["enum"] for p in params if p["name"] == "type")
    assert sorted(enum) == sorted(SERVED_TYPES)


def app_routes(routes, prefix: str = "", in_schema: bool = True) -> list[tuple[str, set[str], bool]]:
    """(path, methods, include_in_schema) of every route, descending into included
    routers (FastAPI keeps an included router as one node holding its own routes)."""
    out = []
    for route in routes:
        inc = getattr(route, "include_context", None)
        if inc is not None:
            out += app_routes(inc.included_router.routes, prefix + inc.prefix, in_schema and inc.include_in_schema)
        elif isinstance(route, StarletteRoute):
            out.append((prefix + route.path, set(route.methods or ()), in_schema and route.include_in_schema))
    return out


def test_every_app_route_is_documented(app):
    documented = _documented()
    missing, hidden = [], []
    for path, methods, in_schema in app_routes(app.routes):
        if path in FHIR_CATCH_ALL:
            continue
        if not in_schema:
            hidden.append(path)
            continue
        for method in sorted(methods - {"HEAD"}):
            if method not in documented.get(path, set()):
                missing.append(f"{method} {path}")
    assert not missing, "served but not in openapi/openapi.json:\n" + "\n".join(missing)
    assert hidden and all(p.startswith("/ig/") for p in hidden), hidden  # only the IG console is left out


def test_smart_endpoints_are_documented_and_answer(client):
    documented = _documented()
    for method, path in (("GET", "/fhir/.well-known/smart-configuration"), ("GET", "/fhir/.well-known/jwks.json"),
                         ("POST", "/fhir/auth/token"), ("POST", "/fhir/auth/introspect")):
        assert method in documented[path], path
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200
    assert "keys" in client.get("/fhir/.well-known/jwks.json").json()
    bad = client.post("/fhir/auth/token", data={"grant_type": "password"})
    assert bad.status_code in (400, 401) and "error" in bad.json()  # RFC 6749 §5.2, as documented


def test_documented_paths_outside_the_fhir_route_table_are_app_routes(app):
    """Documented paths that ``resolve`` does not serve must be served by the app itself."""
    app_paths = {path: methods for path, methods, _ in app_routes(app.routes) if path not in FHIR_CATCH_ALL}
    for path, methods in _documented().items():
        if path in app_paths:
            assert methods <= app_paths[path], path
            continue
        assert path.startswith("/fhir"), path
        concrete = re.sub(r"\{id\}", ID, path).replace("{vid}", VID).replace("{type}", "Observation")
        parts = [p for p in concrete.removeprefix("/fhir").split("/") if p]
        for method in methods:
            assert router.resolve(FhirRequest(method=method, parts=parts)).handler is not None, (method, path)
