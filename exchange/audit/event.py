"""Building AuditEvents (FHIR R4 AuditEvent, shaped after IHE BALP).

IHE Basic Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/): a RESTful interaction
is ``type = rest`` with the interaction as ``subtype``; agents are the client system
(Source Role ID), the server (Destination Role ID) and the human user (``requestor =
true``, SDS user id, job role, organisation, purposeOfUse); entities name each patient
concerned, the query as sent, every resource returned, the count withheld (and the
rules that withheld them) and any break-glass reason.

:func:`event_from_context` builds the event once the response status is known
(``ctx.outcome_status``); :func:`token_event` covers token requests and authorisation
failures (DICOM 110114 User Authentication).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from exchange.pipeline.concerned import named_patients
from exchange.pipeline.context import RequestContext

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
SDS_ROLE = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDSJobRoleName"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
CLIENT_ID = "urn:ietf:params:oauth:client-id"
EXCHANGE_DETAIL = "https://exchange.example.nhs.uk/audit"

SOURCE_OBSERVER = "care-record-exchange"

_ACTIONS = {
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "history": "R",
    "capabilities": "R",
}


def action_for(interaction: str) -> str:
    """C/R/U/D for the CRUD interactions; E (execute) for search, operations, bundles."""
    return _ACTIONS.get(interaction, "E")


def outcome_for(status: int | None) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (4xx), 8 serious (5xx), 12 major."""
    if status is None:
        return "12"
    if status < 400:
        return "0"
    if status < 500:
        return "4"
    return "8"


def instant(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _purpose(code: str | None) -> list[dict[str, Any]]:
    return [{"coding": [_coding(ACT_REASON, code)]}] if code else []


def _client_agent(client_id: str | None, remote_addr: str | None) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, "110153", "Source Role ID")]},
        "who": {"identifier": {"system": CLIENT_ID, "value": client_id or "anonymous"}},
        "requestor": False,
    }
    if remote_addr:
        agent["network"] = {"address": remote_addr, "type": "2"}
    return agent


def _server_agent() -> dict[str, Any]:
    return {
        "type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
        "who": {"display": SOURCE_OBSERVER},
        "requestor": False,
    }


def _user_agent(
    practitioner_id: str | None,
    name: str | None,
    role: str | None,
    organization: str | None,
    purpose: str | None,
) -> dict[str, Any]:
    who: dict[str, Any] = {}
    if practitioner_id:
        who["identifier"] = {"system": SDS_USER, "value": practitioner_id}
    if name:
        who["display"] = name
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(SECURITY_ROLE, "humanuser", "human user")]},
        "who": who,
        "requestor": True,
    }
    if name:
        agent["name"] = name
    if role:
        agent["role"] = [{"coding": [_coding(SDS_ROLE, role)]}]
    if organization:
        agent["location"] = {"identifier": {"system": ODS, "value": organization}}
    if purpose:
        agent["purposeOfUse"] = _purpose(purpose)
    return agent


def _org_agent(organization: str) -> dict[str, Any]:
    return {
        "type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
        "who": {"identifier": {"system": ODS, "value": organization}},
        "requestor": False,
    }


def _source() -> dict[str, Any]:
    return {
        "observer": {"display": SOURCE_OBSERVER},
        "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4",
                         "Application Server")],
    }


def _detail(kind: str, value: str) -> dict[str, Any]:
    return {"type": kind, "valueString": value}


def patients_of(ctx: RequestContext) -> list[str]:
    """Every patient the request concerned (IHE BALP: one Patient entity each).

    Released data, the patients the request names (target, compartment, ``patient=`` /
    ``subject=``; :mod:`exchange.pipeline.concerned`), the patients of resources the
    choke point withheld, and a patient token's patient. So a refused read and a search
    whose every match was withheld still appear in that patient's access history.
    """
    found = named_patients(ctx) | ctx.withheld_patients
    if ctx.requester.patient_id:
        found.add(ctx.requester.patient_id)
    return sorted(found)


def event_from_context(ctx: RequestContext, *, recorded: datetime | None = None) -> dict[str, Any]:
    """The AuditEvent for one finished request (call after ``ctx.outcome_status`` is set)."""
    req = ctx.requester
    interaction = ctx.interaction or "operation"
    subtype = [_coding(RESTFUL, interaction)]
    if ctx.operation:
        subtype.append(_coding(f"{EXCHANGE_DETAIL}/operation", ctx.operation))
    agents = [_client_agent(req.client_id, ctx.remote_addr), _server_agent()]
    if req.kind != "system" or req.practitioner_id:
        agents.append(_user_agent(req.practitioner_id, req.practitioner_name, req.role,
                                  req.organization, req.purpose_of_use))
    if req.organization:
        agents.append(_org_agent(req.organization))
    entities: list[dict[str, Any]] = []
    for pid in patients_of(ctx):
        entities.append({
            "what": {"reference": f"Patient/{pid}"},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        })
    sent = f"{ctx.method} {ctx.path}" + (f"?{ctx.query}" if ctx.query else "")
    entities.append({
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "24", "Query"),
        "query": _b64(sent),
        "description": sent,
        "detail": [_detail("request-id", ctx.request_id)],
    })
    for rel in ctx.released:
        entities.append({
            "what": {"reference": f"{rel.resource_type}/{rel.resource_id}/_history/{rel.version_id}"},
            "type": _coding(RESOURCE_TYPES, rel.resource_type),
            "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        })
    if ctx.withheld or ctx.redacted:
        details = [_detail("withheld-count", str(ctx.withheld)),
                   _detail("redacted-count", str(ctx.redacted))]
        details += [_detail(f"withheld-by:{rule}", str(n))
                    for rule, n in sorted(ctx.withheld_rules.items())]
        entities.append({
            "type": _coding(ENTITY_TYPE, "4", "Other"),
            "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
            "name": "withheld",
            "description": f"{ctx.withheld} resource(s) withheld by sharing rules",
            "detail": details,
        })
    if ctx.narrowed_types:
        # SQL narrowing removes rows before LIMIT, so no count of them exists (counting
        # would cost a second query per search); the log says it was applied and which
        # rules were in force (docs/ig-guide.md, "What withheld means")
        details = [_detail("sql-narrowing", "applied"),
                   _detail("narrowed-types", " ".join(sorted(ctx.narrowed_types)))]
        details += [_detail("narrowing-rule", rule) for rule in sorted(ctx.narrowing_rules)]
        entities.append({
            "type": _coding(ENTITY_TYPE, "4", "Other"),
            "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
            "name": "narrowing",
            "description": "sharing rules narrowed the query in the database; "
                           "rows removed there are not counted",
            "detail": details,
        })
    relationship = getattr(ctx, "relationship", None)
    if req.is_break_glass or relationship is not None:
        details = []
        if relationship is not None:
            details.append(_detail("care-relationship", "true" if relationship else "false"))
        if req.is_break_glass:
            details.append(_detail("break-glass-reason", req.break_glass_reason or ""))
        entities.append({
            "type": _coding(ENTITY_TYPE, "4", "Other"),
            "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
            "name": "break-glass" if req.is_break_glass else "care-relationship",
            "description": (req.break_glass_reason or "") if req.is_break_glass else
            ("care relationship established" if relationship else "no care relationship"),
            "detail": details,
        })
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": subtype,
        "action": action_for(interaction),
        "recorded": instant(recorded or datetime.now(UTC)),
        "outcome": outcome_for(ctx.outcome_status),
        "agent": agents,
        "source": _source(),
        "entity": entities,
    }
    if ctx.outcome_detail:
        event["outcomeDesc"] = ctx.outcome_detail
    elif ctx.outcome_status is not None:
        event["outcomeDesc"] = f"HTTP {ctx.outcome_status}"
    if req.purpose_of_use:
        event["purposeOfEvent"] = _purpose(req.purpose_of_use)
    return event


_AUTH_DISPLAY = {"token": "Login", "auth-failure": "Authorisation failure",
                 "ig-console-login": "IG console sign-in"}


def token_event(
    outcome: int | str,
    client_id: str | None,
    detail: str,
    *,
    subtype: str = "token",
    practitioner_id: str | None = None,
    practitioner_name: str | None = None,
    role: str | None = None,
    organization: str | None = None,
    purpose_of_use: str | None = None,
    remote_addr: str | None = None,
    recorded: datetime | None = None,
) -> dict[str, Any]:
    """An AuditEvent for a token request or an authorisation failure.

    ``outcome`` is an HTTP status (200, 400, 401, ...) or an AuditEvent outcome code
    ("0", "4", "8", "12"). ``subtype`` is ``token`` (token endpoint), ``auth-failure``
    or ``ig-console-login``.
    """
    code = outcome if isinstance(outcome, str) else outcome_for(outcome)
    agents = [_client_agent(client_id, remote_addr), _server_agent()]
    if practitioner_id or practitioner_name:
        agents.append(_user_agent(practitioner_id, practitioner_name, role, organization,
                                  purpose_of_use))
    if organization:
        agents.append(_org_agent(organization))
    display = _AUTH_DISPLAY.get(subtype, subtype)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": _coding(DCM, "110114", "User Authentication"),
        "subtype": [_coding(f"{EXCHANGE_DETAIL}/auth", subtype, display)],
        "action": "E",
        "recorded": instant(recorded or datetime.now(UTC)),
        "outcome": code,
        "outcomeDesc": detail,
        "agent": agents,
        "source": _source(),
    }
    if purpose_of_use:
        event["purposeOfEvent"] = _purpose(purpose_of_use)
    return event
