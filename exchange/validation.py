"""Validation of incoming resources with the fhir.resources R4B models.

R4B's models match R4 (4.0.1) for every resource type the exchange serves. Validation
runs on write only; reads return the stored bytes. Errors name the element path in
FHIRPath form (OperationOutcome.issue.expression, R4 operationoutcome.html).

The models coerce leniently (``"active": "yes"`` becomes True), so the JSON itself is
checked too (R4 json.html#primitive, datatypes.html#string, references.html#literal):
primitives must have their JSON type, there are no nulls, empty strings, arrays or
objects, no control characters, and a literal reference is a local ``#id``, a
``urn:uuid:``/``urn:oid:``, an http(s) URL, ``Type/id[/_history/vid]`` or a conditional
``Type?query``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from exchange.outcome import FhirError, Issue

SERVED_TYPES: tuple[str, ...] = (
    "Patient", "Practitioner", "PractitionerRole", "Organization", "Location",
    "RelatedPerson", "Encounter", "EpisodeOfCare", "Condition", "AllergyIntolerance",
    "MedicationStatement", "MedicationRequest", "Medication", "Immunization", "Observation",
    "DiagnosticReport", "Specimen", "Procedure", "CarePlan", "CareTeam", "Goal",
    "ServiceRequest", "DocumentReference", "Composition", "Flag", "Consent",
    "QuestionnaireResponse", "Provenance", "AuditEvent", "Device", "Task", "Appointment",
    "List",
)
SERVED = frozenset(SERVED_TYPES)
#: deepest JSON nesting accepted (objects and arrays); real resources stay far below,
#: and the model validation recurses once per level (a RecursionError at a few hundred)
MAX_DEPTH = 100
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
REFERENCE = re.compile(
    r"#[A-Za-z0-9\-.]*|urn:uuid:[0-9a-fA-F\-]{36}|urn:oid:[0-2](\.[0-9]+)+"
    r"|https?://[^\s/]+(/[^\s]*)?|[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?"
    r"|[A-Z][A-Za-z]+\?\S+"
)


@lru_cache(maxsize=64)
def _model(resource_type: str):  # noqa: ANN202
    return get_fhir_model_class(resource_type)


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            if part.startswith("function-") or part in ("__root__",):
                continue
            if "[" in part or part.endswith("Validator"):
                continue
            out += f".{part.removesuffix('__ext')}"
    return out


@lru_cache(maxsize=512)
def _aliases(model: type[BaseModel]) -> dict[str, str]:
    return {(f.alias or n): n for n, f in model.model_fields.items()}


def _json_problems(resource: dict[str, Any], rtype: str, strict: bool) -> list[Issue]:
    """Control characters anywhere in the JSON, and when ``strict`` nulls and empty values
    (iterative: any depth)."""
    issues: list[Issue] = []
    stack: list[tuple[Any, str, bool, int]] = [(resource, rtype, False, 1)]
    while stack and len(issues) < 20:
        node, path, in_array, depth = stack.pop()
        if depth > MAX_DEPTH:
            return [Issue("too-long", f"The JSON is nested deeper than {MAX_DEPTH} levels", "error", [path[:200]])]
        if node is None and not in_array and strict:
            issues.append(Issue("structure", "null is not allowed here", "error", [path]))
        elif isinstance(node, str):
            if strict and not node.strip():
                issues.append(Issue("value", "Empty or blank strings are not allowed", "error", [path]))
            elif CONTROL.search(node):
                issues.append(Issue("value", "Control characters are not allowed in strings", "error", [path]))
        elif isinstance(node, dict):
            if strict and not node:
                issues.append(Issue("structure", "Empty objects are not allowed", "error", [path]))
            for k, v in node.items():
                if CONTROL.search(k):
                    issues.append(Issue("structure", "Control characters in an element name", "error", [path]))
                else:
                    stack.append((v, f"{path}.{k}", False, depth + 1))
        elif isinstance(node, list):
            if strict and not node:
                issues.append(Issue("structure", "Empty arrays are not allowed", "error", [path]))
            stack.extend((v, f"{path}[{i}]", True, depth + 1) for i, v in enumerate(node))
    return issues


def _type_problems(resource: dict[str, Any], instance: BaseModel, rtype: str) -> list[Issue]:
    """Walk the JSON beside the parsed model: each primitive must have its JSON type and
    each Reference.reference a literal-reference form."""
    issues: list[Issue] = []
    stack: list[tuple[Any, Any, str]] = [(resource, instance, rtype)]
    while stack and len(issues) < 20:
        node, parsed, path = stack.pop()
        if isinstance(parsed, BaseModel) and isinstance(node, dict):
            names = _aliases(type(parsed))
            ref = node.get("reference") if type(parsed).__name__ == "Reference" else None
            if isinstance(ref, str) and not REFERENCE.fullmatch(ref):
                issues.append(Issue("value", f"Invalid reference {node['reference'][:80]!r}", "error",
                                        [f"{path}.reference"]))
            for k, v in node.items():
                if k != "resourceType" and k in names:
                    stack.append((v, getattr(parsed, names[k], None), f"{path}.{k}"))
        elif isinstance(parsed, list) and isinstance(node, list):
            stack.extend((n, p, f"{path}[{i}]") for i, (n, p) in enumerate(zip(node, parsed, strict=False)))
        elif isinstance(parsed, bool):
            if not isinstance(node, bool):
                issues.append(Issue("value", "A boolean must be JSON true or false", "error", [path]))
        elif isinstance(parsed, int):
            if isinstance(node, bool) or not isinstance(node, int):
                issues.append(Issue("value", "An integer must be a JSON number without a fraction", "error", [path]))
        elif isinstance(parsed, (float, Decimal)):
            if isinstance(node, bool) or not isinstance(node, (int, float)):
                issues.append(Issue("value", "A decimal must be a JSON number", "error", [path]))
        elif isinstance(parsed, (str, date, datetime, time)) and not isinstance(node, str):
            issues.append(Issue("value", "This element must be a JSON string", "error", [path]))
    return issues


def _raise(issues: list[Issue]) -> None:
    raise FhirError(issues[0].code, issues[0].diagnostics, status=400, issues=issues)


def validate_resource(resource: Any, expected_type: str | None = None, *, strict: bool = False) -> dict[str, Any]:
    """Check structure and types; return the resource dict unchanged on success.

    Control characters are always refused (PostgreSQL cannot store NUL). ``strict`` (the
    REST write path) also applies the JSON rules of the module docstring; the adapter
    pipeline validates before it rewrites its local ``Type/@id`` references, so it
    does not ask for them.

    Raises FhirError(400) with code ``structure`` / ``invalid`` / ``required`` and the
    element path of every problem.
    """
    if not isinstance(resource, dict):
        raise FhirError("structure", "The body must be a JSON object (a FHIR resource)")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FhirError("required", "resourceType is missing", expression="resourceType")
    if expected_type is not None and rtype != expected_type:
        raise FhirError(
            "invalid",
            f"resourceType {rtype!r} does not match the URL's type {expected_type!r}",
            expression="resourceType",
        )
    if rtype not in SERVED:
        raise FhirError("not-supported", f"Resource type {rtype!r} is not served here", status=400)
    problems = _json_problems(resource, rtype, strict)
    if problems:
        _raise(problems)
    try:
        instance = _model(rtype).model_validate(resource)
    except ValidationError as exc:
        issues = []
        for err in exc.errors()[:20]:
            code = "required" if err.get("type") == "missing" else "structure" if err.get("type") in ("extra_forbidden",) else "value"
            if err.get("type") in ("extra_forbidden",):
                msg = f"Unknown element {err['loc'][-1]!r}"
            else:
                msg = str(err.get("msg", "invalid value"))
            issues.append(Issue(code, msg, "error", [_expression(rtype, tuple(err.get("loc", ())))]))
        raise FhirError(issues[0].code, issues[0].diagnostics, status=400, issues=issues) from None
    except (ValueError, TypeError) as exc:
        raise FhirError("invalid", f"Invalid {rtype}: {exc}", expression=rtype) from None
    except RecursionError:
        raise FhirError("too-long", f"The {rtype} is nested too deeply to validate", expression=rtype) from None
    problems = _type_problems(resource, instance, rtype) if strict else []
    if problems:
        _raise(problems)
    return resource
