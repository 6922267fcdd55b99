"""The patients a request names: its target, its compartment and its patient parameters.

One parser shared by the audit log (every patient concerned is recorded, IHE BALP
"Patient" entity, https://profiles.ihe.net/ITI/BALP/) and by the sharing rules (the
directives of the patients a search is scoped to). It reads only what the client sent
(path and query string), so it works before authentication, for a refused request, and
for a search whose every match was withheld.

What counts as naming a patient (FHIR R4):

* an instance or operation target ``Patient/{id}``, ``Patient/{id}/$op`` (http.html#read,
  operations.html);
* a compartment search ``Patient/{id}/{type}`` (compartmentdefinition.html);
* the search parameters ``patient``, ``subject``, ``beneficiary`` (with or without the
  ``:Patient`` type modifier, search.html#reference), a plain id or ``Patient/{id}``,
  comma-separated values being alternatives (search.html#combining);
* ``_id`` on a Patient search.

Values that are no valid FHIR id (datatypes.html#id: ``[A-Za-z0-9\\-\\.]{1,64}``) or that
reference another type are ignored: they name no patient.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from exchange.pipeline.context import RequestContext

PATIENT_PARAMS = frozenset({"patient", "subject", "beneficiary",
                            "patient:Patient", "subject:Patient", "beneficiary:Patient"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _valid(value: str) -> str | None:
    value = value.strip().removeprefix("Patient/")
    return value if _FHIR_ID.fullmatch(value) else None


def _path_patient(path: str) -> str | None:
    """``Patient/{id}`` (instance, compartment, operation, history) at the start of a path."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "fhir":  # paths recorded with the base's last segment
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "Patient" and not parts[1].startswith(("$", "_")):
        return _valid(parts[1])
    return None


def patients_named_by(ctx: RequestContext) -> set[str]:
    """Patients the request names explicitly (target, compartment, patient parameters)."""
    found: set[str] = set()
    if ctx.resource_type == "Patient" and ctx.resource_id:
        pid = _valid(ctx.resource_id)
        if pid:
            found.add(pid)
    pid = _path_patient(ctx.path or "")
    if pid:
        found.add(pid)
    patient_search = ctx.resource_type == "Patient" or _path_type(ctx.path or "") == "Patient"
    for key, value in parse_qsl(ctx.query or "", keep_blank_values=False):
        if key in PATIENT_PARAMS or (key == "_id" and patient_search):
            for v in value.split(","):
                if "/" in v.strip() and not v.strip().startswith("Patient/"):
                    continue  # a reference to another type names no patient
                pid = _valid(v)
                if pid:
                    found.add(pid)
    return found


def _path_type(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "fhir":
        parts = parts[1:]
    return parts[0] if len(parts) == 1 else None


def named_patients(ctx: RequestContext) -> set[str]:
    """The patients already known to concern the request (``ctx.patients``) plus those it
    names explicitly (:func:`patients_named_by`)."""
    return set(ctx.patients) | patients_named_by(ctx)
