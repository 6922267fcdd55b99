"""Queries behind the IG console pages: filtered event lists, daily volume, break-glass
by organisation, and one event with its chain position (issue 7, "Using the log")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, func, select

from exchange.audit.fhir import date_range
from exchange.audit.tables import audit_event, audit_event_patient
from exchange.outcome import Invalid

e = audit_event.c
FILTER_FIELDS = ("patient", "user", "organization", "purpose", "outcome", "interaction",
                 "break_glass", "date_from", "date_to")
PAGE_SIZE = 50


def printable(text: str) -> str:
    """Text without control characters (NUL cannot even be stored or compared in PostgreSQL)."""
    return text if text.isprintable() else "".join(ch for ch in text if ch.isprintable())


@dataclass
class Filters:
    patient: str = ""
    user: str = ""
    organization: str = ""
    purpose: str = ""
    outcome: str = ""
    interaction: str = ""
    break_glass: str = ""
    date_from: str = ""
    date_to: str = ""

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        return cls(**{f: printable(query.get(f) or "").strip()[:256] for f in FILTER_FIELDS})

    def as_params(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FILTER_FIELDS if getattr(self, f)}

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.patient:
            pid = self.patient.removeprefix("Patient/")
            conds.append(e.seq.in_(select(audit_event_patient.c.seq)
                                   .where(audit_event_patient.c.patient_id == pid)))
        if self.user:
            like = f"%{self.user.lower()}%"
            conds.append(func.lower(e.agent).like(like) | func.lower(e.agent_name).like(like)
                         | func.lower(e.client_id).like(like))
        if self.organization:
            conds.append(func.upper(e.organization) == self.organization.upper())
        if self.purpose:
            conds.append(e.purpose == self.purpose)
        if self.outcome:
            if self.outcome not in ("0", "4", "8", "12"):
                raise Invalid("Choose a result from the list")
            conds.append(e.outcome == int(self.outcome))
        if self.interaction:
            conds.append(e.subtype == self.interaction)
        if self.break_glass == "yes":
            conds.append(e.break_glass.is_(True))
        if self.date_from:
            conds.append(e.recorded >= _day(self.date_from)[0])
        if self.date_to:
            conds.append(e.recorded < _day(self.date_to)[1])
        return conds


def _day(text: str) -> tuple[datetime, datetime]:
    try:
        return date_range(text)
    except Invalid as exc:
        raise Invalid(f"'{text}' is not a date: use the form 2025-01-31") from exc


def list_events(conn: Connection, filters: Filters, *, page: int = 1,
                limit: int | None = PAGE_SIZE) -> tuple[list[Any], int]:
    conds = filters.conditions()
    total = conn.execute(select(func.count()).select_from(audit_event).where(*conds)).scalar_one()
    q = select(audit_event).where(*conds).order_by(e.seq.desc())
    if limit:
        q = q.limit(limit).offset((max(page, 1) - 1) * limit)
    rows = conn.execute(q).all()
    pats: dict[int, list[str]] = {}
    seqs = [r.seq for r in rows]
    for i in range(0, len(seqs), 500):
        for s, p in conn.execute(select(audit_event_patient.c.seq, audit_event_patient.c.patient_id)
                                 .where(audit_event_patient.c.seq.in_(seqs[i : i + 500]))):
            pats.setdefault(s, []).append(p)
    return [_view(r, sorted(pats.get(r.seq, []))) for r in rows], total


def _view(row: Any, patients: list[str]) -> dict[str, Any]:
    ts = row.recorded if row.recorded.tzinfo else row.recorded.replace(tzinfo=UTC)
    return {
        "seq": row.seq, "event_id": row.event_id,
        "recorded": ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "user_name": row.agent_name or "", "user_id": row.agent or "", "client_id": row.client_id or "",
        "organization": row.organization or "", "role": row.role or "", "purpose": row.purpose or "",
        "interaction": row.subtype, "action": row.action, "outcome": row.outcome,
        "break_glass": bool(row.break_glass), "reason": row.break_glass_reason or "",
        "relationship": row.relationship, "withheld": row.withheld, "released": row.released,
        "patients": patients, "resource_type": row.resource_type or "",
    }


def get_event(conn: Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(audit_event).where(e.event_id == event_id)).first()
    if row is None:
        return None
    pats = conn.execute(select(audit_event_patient.c.patient_id)
                        .where(audit_event_patient.c.seq == row.seq)).scalars().all()
    view = _view(row, sorted(pats))
    content = orjson.loads(bytes(row.content))
    view.update(hash=row.hash, prev_hash=row.prev_hash, resource=content,
                json=orjson.dumps(content, option=orjson.OPT_INDENT_2).decode(),
                outcome_desc=content.get("outcomeDesc", ""))
    entities = []
    for ent in content.get("entity", []):
        entities.append({
            "role": ent.get("role", {}).get("display") or ent.get("role", {}).get("code", ""),
            "what": ent.get("what", {}).get("reference", "") or ent.get("name", ""),
            "description": ent.get("description", ""),
            "details": [f"{d.get('type')}: {d.get('valueString', '')}" for d in ent.get("detail", [])
                        if d.get("type") != "request-id"],
        })
    view["entities"] = entities
    return view


def daily_volume(conn: Connection, days: int = 30) -> list[tuple[str, int]]:
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)
    day = func.date(e.recorded)
    got = {str(d): n for d, n in conn.execute(select(day, func.count()).where(e.recorded >= start)
                                              .group_by(day))}
    return [(str(today - timedelta(days=i)), got.get(str(today - timedelta(days=i)), 0))
            for i in range(days - 1, -1, -1)]


def break_glass_by_org(conn: Connection, days: int = 30) -> list[tuple[str, int]]:
    start = datetime.now(UTC) - timedelta(days=days)
    org = func.coalesce(e.organization, "(unknown)")
    rows = conn.execute(select(org, func.count()).where(e.break_glass.is_(True), e.recorded >= start)
                        .group_by(org).order_by(func.count().desc(), org).limit(15)).all()
    return [(str(o), int(n)) for o, n in rows]


def totals(conn: Connection) -> dict[str, int]:
    since = datetime.now(UTC) - timedelta(days=30)
    return {
        "events": conn.execute(select(func.count()).select_from(audit_event)).scalar_one(),
        "recent": conn.execute(select(func.count()).where(e.recorded >= since)).scalar_one(),
        "break_glass": conn.execute(select(func.count()).where(e.break_glass.is_(True),
                                                               e.recorded >= since)).scalar_one(),
        "failures": conn.execute(select(func.count()).where(e.outcome > 0, e.recorded >= since))
        .scalar_one(),
    }


def recent_failed_logins(conn: Connection, agent: str, window: timedelta) -> int:
    """Failed console sign-ins for one account within ``window`` (read from the log)."""
    since = datetime.now(UTC) - window
    return conn.execute(select(func.count()).where(
        e.agent == agent, e.recorded >= since, e.subtype == "ig-console-login", e.outcome > 0,
    )).scalar_one()
