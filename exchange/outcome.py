"""One error vocabulary for the whole exchange (FHIR R4 OperationOutcome, §2.36 / http.html#errors).

The core never raises web-framework exceptions. Anything that must reach a client as an
error is a :class:`FhirError` carrying an issue code from the R4 ``IssueType`` value set
(http://hl7.org/fhir/R4/valueset-issue-type.html); the HTTP status is derived from the
code in exactly one place (:data:`STATUS_BY_CODE`) unless the raiser overrides it.

Exception hierarchy::

    FhirError                     any client-facing failure (-> OperationOutcome)
     +-- NotFound                 404 not-found
     +-- Gone                     410 deleted
     +-- Invalid                  400 invalid / structure / required / value
     +-- Conflict                 409 conflict
     +-- PreconditionFailed       412 conflict (If-Match / version mismatch)
     +-- Unauthorized             401 login (with WWW-Authenticate: Bearer)
     +-- Forbidden                403 forbidden
     +-- Unavailable              503 transient (database or audit store down)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

STATUS_BY_CODE: dict[str, int] = {
    "invalid": 400,
    "structure": 400,
    "required": 400,
    "value": 400,
    "invariant": 400,
    "security": 403,
    "login": 401,
    "unknown": 401,
    "expired": 401,
    "forbidden": 403,
    "suppressed": 403,
    "processing": 422,
    "not-supported": 400,
    "duplicate": 409,
    "multiple-matches": 412,
    "not-found": 404,
    "deleted": 410,
    "too-long": 413,
    "code-invalid": 400,
    "extension": 400,
    "too-costly": 403,
    "business-rule": 422,
    "conflict": 409,
    "transient": 503,
    "lock-error": 409,
    "no-store": 503,
    "exception": 500,
    "timeout": 504,
    "incomplete": 500,
    "throttled": 429,
    "informational": 200,
}


@dataclass
class Issue:
    """One OperationOutcome.issue (severity, code, diagnostics, expression)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """A failure that reaches the client as an OperationOutcome."""

    def __init__(
        self,
        code: str,
        diagnostics: str,
        *,
        status: int | None = None,
        expression: list[str] | str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if isinstance(expression, str):
            expression = [expression]
        self.code = code
        self.diagnostics = diagnostics
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 400)
        self.issues = issues or [Issue(code, diagnostics, "error", expression or [])]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class NotFound(FhirError):
    def __init__(self, diagnostics: str) -> None:
        super().__init__("not-found", diagnostics, status=404)


class Gone(FhirError):
    def __init__(self, diagnostics: str, headers: dict[str, str] | None = None) -> None:
        super().__init__("deleted", diagnostics, status=410, headers=headers)


class Invalid(FhirError):
    def __init__(self, diagnostics: str, *, code: str = "invalid", expression=None) -> None:
        super().__init__(code, diagnostics, status=400, expression=expression)


class Conflict(FhirError):
    def __init__(self, diagnostics: str) -> None:
        super().__init__("conflict", diagnostics, status=409)


class PreconditionFailed(FhirError):
    def __init__(self, diagnostics: str, code: str = "conflict") -> None:
        super().__init__(code, diagnostics, status=412)


class Unauthorized(FhirError):
    def __init__(self, diagnostics: str = "Authentication required", error: str = "invalid_token") -> None:
        header = 'Bearer realm="exchange"'
        if error:
            header += f', error="{error}"'
        super().__init__("login", diagnostics, status=401, headers={"WWW-Authenticate": header})


class Forbidden(FhirError):
    def __init__(self, diagnostics: str, code: str = "forbidden") -> None:
        super().__init__(code, diagnostics, status=403)


class Unavailable(FhirError):
    def __init__(self, diagnostics: str) -> None:
        super().__init__("transient", diagnostics, status=503, headers={"Retry-After": "5"})


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def outcome_bytes(issues: list[Issue]) -> bytes:
    return orjson.dumps(operation_outcome(issues))


def information(diagnostics: str, code: str = "informational") -> Issue:
    return Issue(code, diagnostics, "information")
