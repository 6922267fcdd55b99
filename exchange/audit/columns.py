"""The query columns of ``audit_event``, derived from the AuditEvent JSON alone.

The same function fills the columns on insert and re-derives them in ``verify``, so a
column edited behind the log's back (say, ``outcome`` or ``break_glass``) is caught even
though the hash covers only the canonical content (FHIR R4 AuditEvent, IHE BALP).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exchange.audit.event import CLIENT_ID, ODS, SDS_ROLE, SDS_USER

COLUMN_NAMES = (
    "type_code", "subtype", "action", "outcome", "agent", "agent_name", "client_id",
    "organization", "role", "purpose", "break_glass", "break_glass_reason", "relationship",
    "withheld", "released", "resource_type", "entity_types",
)


MAX_ID = 64  # FHIR id length (datatypes.html#id)
#: widths of the string query columns (exchange/audit/tables.py): a longer claim or value
#: is cut in the column so the event is still recorded (no access without a record)
COLUMN_LIMITS = {"subtype": 64, "agent": 128, "agent_name": 256, "client_id": 128, "organization": 64,
                 "role": 64, "purpose": 16, "resource_type": 64, "type_code": 32}


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _details(entity: dict[str, Any]) -> dict[str, str]:
    return {d.get("type", ""): d.get("valueString", "") for d in entity.get("detail", [])}


def derive(event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(column values, patient ids) for one AuditEvent dict."""
    cols: dict[str, Any] = {
        "type_code": event["type"]["code"],
        "subtype": event["subtype"][0]["code"] if event.get("subtype") else "",
        "action": event.get("action", "E"),
        "outcome": int(event.get("outcome", "12")),
        "agent": None, "agent_name": None, "client_id": None, "organization": None,
        "role": None, "purpose": None, "break_glass": False, "break_glass_reason": None,
        "relationship": None, "withheld": 0, "released": 0, "resource_type": None,
    }
    for agent in event.get("agent", []):
        ident = agent.get("who", {}).get("identifier", {})
        system, value = ident.get("system"), ident.get("value")
        if system == CLIENT_ID:
            cols["client_id"] = value
        elif agent.get("requestor"):
            if system == SDS_USER:
                cols["agent"] = value
            cols["agent_name"] = agent.get("name")
            for role in agent.get("role", []):
                for c in role.get("coding", []):
                    if c.get("system") == SDS_ROLE:
                        cols["role"] = c.get("code")
            loc = agent.get("location", {}).get("identifier", {})
            if loc.get("system") == ODS:
                cols["organization"] = loc.get("value")
        elif system == ODS and cols["organization"] is None:
            cols["organization"] = value
    for p in event.get("purposeOfEvent", []):
        for c in p.get("coding", []):
            cols["purpose"] = c.get("code")
    cols["break_glass"] = cols["purpose"] == "BTG"
    patients: list[str] = []
    types: set[str] = set()
    for ent in event.get("entity", []):
        ref = ent.get("what", {}).get("reference", "")
        etype = ent.get("type", {})
        role = ent.get("role", {}).get("code")
        if role == "1" and ref.startswith("Patient/"):
            if len(ref) - 8 <= MAX_ID:  # longer is no valid FHIR id: it names no patient
                patients.append(ref[8:])
            types.add("Patient")
        elif role == "4":
            cols["released"] += 1
            types.add(etype.get("code", ""))
        details = _details(ent)
        if "withheld-count" in details:
            cols["withheld"] = int(details["withheld-count"])
        if "break-glass-reason" in details:
            cols["break_glass_reason"] = details["break-glass-reason"]
        if "care-relationship" in details:
            cols["relationship"] = details["care-relationship"] == "true"
        if role == "24":
            desc = ent.get("description", "")
            path = desc.split(" ", 1)[1].split("?", 1)[0] if " " in desc else ""
            parts = [p for p in path.split("/") if p and p != "fhir"]
            if parts and parts[0][:1].isupper():
                cols["resource_type"] = parts[0]
    types.discard("")
    cols["entity_types"] = (" " + " ".join(sorted(types)) + " ") if types else ""
    for name, limit in COLUMN_LIMITS.items():  # query columns only; the JSON keeps everything
        value = cols.get(name)
        if isinstance(value, str) and len(value) > limit:
            cols[name] = value[:limit]
    return cols, sorted(set(patients))
