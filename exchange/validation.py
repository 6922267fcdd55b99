"""Validation of incoming resources with the fhir.resources R4B models.

R4B's models match R4 (4.0.1) for every resource type the exchange serves. Validation
runs on write only; reads return the stored bytes. Errors name the element path in
FHIRPath form (OperationOutcome.issue.expression, R4 operationoutcome.html).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

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


def validate_resource(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check structure and types; return the resource dict unchanged on success.

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
    try:
        _model(rtype).model_validate(resource)
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
    return resource
