"""FHIR access to the audit log: ``GET /fhir/AuditEvent`` and ``GET /fhir/AuditEvent/{id}``.

FHIR R4 AuditEvent search parameters (http://hl7.org/fhir/R4/auditevent.html#search):
``patient``, ``agent`` (SDS user id or client id), ``agent-name``, ``agent-role``,
``date`` (with the prefixes of http://hl7.org/fhir/R4/search.html#prefix), ``purpose``,
``outcome``, ``entity-type``, ``type``, ``subtype``, ``action``; plus ``_count`` and
paging. Several values separated by commas are ORed; repeated parameters are ANDed.
Unknown parameters are rejected (400). Results are newest first; paging links carry a
``_after`` cursor (the sequence number of the last event on the page), so pages stay
stable while new events are appended. Events are served as the stored bytes.

The lead's router admits only IG and system scopes; reading the log is itself audited
by the normal request path: the events returned are recorded in ``ctx.released``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import ColumnElement, Connection, and_, exists, func, not_, or_, select

from exchange.audit.tables import audit_event, audit_event_patient
from exchange.outcome import Invalid
from exchange.pipeline.context import Released, RequestContext
from exchange.settings import Settings

_IGNORED = {"_format", "_pretty", "_total"}
_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap")


def date_range(value: str) -> tuple[datetime, datetime]:
    """[start, end) covered by an R4 date/dateTime of any precision (UTC if no zone)."""
    m = _DATE_RE.match(value)
    if not m:
        raise Invalid(f"Invalid date '{value}'", expression="date")
    y, mo, d, hh, mi, ss, tz = m.groups()
    try:
        if mo is None:
            start = datetime(int(y), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if d is None:
            start = datetime(int(y), int(mo), 1, tzinfo=UTC)
            nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 \
                else start.replace(month=start.month + 1)
            return start, nxt
        if hh is None:
            start = datetime(int(y), int(mo), int(d), tzinfo=UTC)
            return start, start + timedelta(days=1)
        text = value if tz else value + "Z"
        start = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        step = timedelta(seconds=1) if ss is not None else timedelta(minutes=1)
        return start, start + step
    except ValueError as exc:
        raise Invalid(f"Invalid date '{value}'", expression="date") from exc


def date_condition(raw: str) -> ColumnElement[bool]:
    prefix, value = ("eq", raw)
    if raw[:2] in _PREFIXES and not raw[:2].isdigit():
        prefix, value = raw[:2], raw[2:]
    lo, hi = date_range(value)
    col = audit_event.c.recorded
    return {
        "eq": and_(col >= lo, col < hi), "ap": and_(col >= lo, col < hi),
        "ne": or_(col < lo, col >= hi),
        "lt": col < lo, "eb": col < lo, "le": col < hi,
        "gt": col >= hi, "sa": col >= hi, "ge": col >= lo,
    }[prefix]


def _token(value: str) -> str:
    return value.split("|", 1)[1] if "|" in value else value


def _patient_id(value: str) -> str:
    value = value.rstrip("/")
    if "Patient/" in value:
        return value.split("Patient/", 1)[1].split("/")[0]
    return value


def _condition(name: str, values: list[str]) -> ColumnElement[bool]:
    c = audit_event.c
    if name == "patient":
        ids = [_patient_id(v) for v in values]
        return exists().where(audit_event_patient.c.seq == c.seq,
                              audit_event_patient.c.patient_id.in_(ids))
    if name == "agent":
        vals = [_token(v).removeprefix("Practitioner/") for v in values]
        return or_(c.agent.in_(vals), c.client_id.in_(vals))
    if name == "agent-name":
        return or_(*(func.lower(c.agent_name).contains(v.lower()) for v in values))
    if name == "agent-role":
        return c.role.in_([_token(v) for v in values])
    if name == "purpose":
        return c.purpose.in_([_token(v) for v in values])
    if name == "outcome":
        try:
            return c.outcome.in_([int(_token(v)) for v in values])
        except ValueError as exc:
            raise Invalid("outcome must be one of 0, 4, 8, 12", expression="outcome") from exc
    if name == "entity-type":
        types = [{"1": "Patient"}.get(_token(v), _token(v)) for v in values]
        return or_(*(c.entity_types.contains(f" {t} ") for t in types))
    if name == "type":
        return c.type_code.in_([_token(v) for v in values])
    if name == "subtype":
        return c.subtype.in_([_token(v) for v in values])
    if name == "action":
        return c.action.in_([_token(v) for v in values])
    raise Invalid(f"Unknown search parameter '{name}' for AuditEvent", code="not-supported",
                  expression=name)


def _int_param(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise Invalid(f"{name} must be an integer", expression=name) from exc
    if n < 0:
        raise Invalid(f"{name} must not be negative", expression=name)
    return n


def build_filters(params: list[tuple[str, str]]) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for name, value in params:
        if name in _IGNORED or name in ("_count", "_after"):
            continue
        if not value:
            raise Invalid(f"Empty value for '{name}'", expression=name)
        if name == "date":
            conds.append(date_condition(value))
        elif name == "patient:missing":
            conds.append(not_(exists().where(audit_event_patient.c.seq == audit_event.c.seq)))
        else:
            conds.append(_condition(name, value.split(",")))
    return conds


def search_audit(conn: Connection, ctx: RequestContext, settings: Settings,
                 params: list[tuple[str, str]], base_url: str) -> bytes:
    """A searchset Bundle of AuditEvents (newest first) as JSON bytes."""
    count = settings.default_page_size
    after: int | None = None
    for name, value in params:
        if name == "_count":
            count = min(_int_param(name, value), settings.max_page_size)
        elif name == "_after":
            after = _int_param(name, value)
    conds = build_filters(params)
    total = conn.execute(select(func.count()).select_from(audit_event).where(*conds)).scalar_one()
    page_conds = list(conds) + ([audit_event.c.seq < after] if after is not None else [])
    rows = conn.execute(select(audit_event.c.seq, audit_event.c.event_id, audit_event.c.content)
                        .where(*page_conds).order_by(audit_event.c.seq.desc())
                        .limit(count + 1)).all() if count else []
    more = len(rows) > count
    rows = rows[:count]
    base = base_url.rstrip("/")
    kept = [(k, v) for k, v in params if k != "_after"]
    links = [{"relation": "self", "url": f"{base}/AuditEvent?{urlencode(params)}"}]
    if more and rows:
        links.append({"relation": "next",
                      "url": f"{base}/AuditEvent?{urlencode(kept + [('_after', str(rows[-1].seq))])}"})
    entries: list[dict[str, Any]] = []
    for row in rows:
        entries.append({"fullUrl": f"{base}/AuditEvent/{row.event_id}",
                        "resource": orjson.Fragment(bytes(row.content)),
                        "search": {"mode": "match"}})
        ctx.released.append(Released("AuditEvent", row.event_id, "1"))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total,
                              "link": links}
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def read_audit(conn: Connection, event_id: str, ctx: RequestContext | None = None) -> bytes | None:
    """One AuditEvent's stored bytes, or None if there is no such event.

    With ``ctx``, the event read is recorded in ``ctx.released`` (reading the log is audited).
    """
    row = conn.execute(select(audit_event.c.content).where(audit_event.c.event_id == event_id)).first()
    if row is None:
        return None
    if ctx is not None:
        ctx.released.append(Released("AuditEvent", event_id, "1"))
    return bytes(row.content)
