"""The framework-free request and response of one FHIR interaction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from exchange.outcome import FhirError, Issue, operation_outcome
from exchange.repository.stored import StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"

#: C0 control characters other than tab, CR and LF: never valid in a FHIR string
#: (datatypes.html#string), an id or a search value; PostgreSQL cannot even store NUL.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


#: deepest JSON nesting of a request body: a Bundle's resources sit 4 levels down and
#: each may nest 100 (exchange.validation.MAX_DEPTH); orjson serialises at most 254
MAX_BODY_DEPTH = 128


def json_depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests objects/arrays deeper than ``limit`` (iterative)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def check_param_name(name: str) -> str:
    """A parameter name is non-empty and printable, without spaces (search.html#ptypes)."""
    if not name or not name.isprintable() or any(c.isspace() for c in name):
        raise FhirError("invalid", f"Invalid query parameter name {name[:60]!r}", status=400)
    return name


def check_text(value: str, where: str, expression: str | None = None) -> str:
    """Refuse a URL segment, parameter name or value carrying control characters (400)."""
    if CONTROL_CHARS.search(value):
        raise FhirError("value", f"{where} contains a control character", status=400, expression=expression)
    return value


@dataclass
class FhirRequest:
    method: str
    parts: list[str]  # path segments after the FHIR base, e.g. ["Patient", "123"]
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes | None = None
    base_url: str = ""
    _json: Any = None

    def __post_init__(self) -> None:
        for part in self.parts:
            check_text(part, "The request path")
        for name, value in self.params:
            check_param_name(name)
            check_text(value, f"Parameter {name[:60]!r}", expression=name[:60])

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        if self._json is None:
            if not self.body:
                raise FhirError("required", "A request body is required", status=400)
            try:
                parsed = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise FhirError("structure", f"The body is not valid JSON: {exc}", status=400) from None
            if json_depth_exceeds(parsed, MAX_BODY_DEPTH):
                raise FhirError("too-long", f"The body is nested deeper than {MAX_BODY_DEPTH} levels", status=400)
            self._json = parsed
        return self._json

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    @property
    def query_string(self) -> str:
        return urlencode(self.params)

    def prefer(self, key: str) -> str | None:
        """A token from the Prefer header (RFC 7240), e.g. prefer("return")."""
        raw = self.header("prefer") or ""
        for part in raw.split(","):
            for item in part.split(";"):
                if "=" in item:
                    k, v = item.split("=", 1)
                    if k.strip().lower() == key:
                        return v.strip().strip('"')
        return None


@dataclass
class FhirResponse:
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    resource: StoredResource | None = None  # the resource this response is about
    outcome: dict[str, Any] | None = None  # for batch entries: an OperationOutcome


def http_date(res: StoredResource) -> str:
    return format_datetime(res.last_updated, usegmt=True)


def resource_headers(res: StoredResource, base_url: str) -> dict[str, str]:
    return {
        "ETag": res.etag,
        "Last-Modified": http_date(res),
        "Location": f"{base_url}/{res.resource_type}/{res.id}/_history/{res.version_id}",
    }


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> FhirResponse:
    return FhirResponse(status=status, body=orjson.dumps(obj), headers=headers or {})


def outcome_response(issues: list[Issue], status: int = 200) -> FhirResponse:
    oo = operation_outcome(issues)
    return FhirResponse(status=status, body=orjson.dumps(oo), outcome=oo)
