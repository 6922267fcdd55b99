"""IG reports over the access log (issue 7, "Using the log").

Each report takes a time window ``[start, end)`` and returns plain rows (dicts with the
columns named in :data:`REPORTS`), used by the CLI (``exchange audit report NAME``) and
the IG console alike:

* ``break-glass``: every break-glass access with its stated reason;
* ``no-relationship``: accesses made without an established care relationship;
* ``patient-history``: who has looked at one patient's record (subject access requests);
* ``high-volume``: users who looked at many different patients in the window;
* ``out-of-hours``: accesses outside working hours (UK local time) or at weekends;
* ``same-surname-or-address``: accesses to a patient who shares the practitioner's
  surname (from the token) or address (from the Practitioner resource, if held).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, distinct, func, select

from exchange.audit.tables import audit_event, audit_event_patient
from exchange.db.tables import resource_current
from exchange.outcome import Invalid
from exchange.repository.store import read_current
from exchange.search.tables import search_token

LOCAL_TZ = ZoneInfo("Europe/London")
e = audit_event.c

EVENT_COLUMNS = ["recorded", "user_name", "user_id", "client_id", "organization", "role",
                 "purpose", "interaction", "outcome", "patients", "released", "withheld",
                 "reason", "event_id"]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    columns: list[str]
    options: tuple[str, ...]
    run: Callable[[Connection, datetime, datetime, dict[str, str]], list[dict[str, Any]]]


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _patients_for(conn: Connection, seqs: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(0, len(seqs), 500):
        chunk = seqs[i : i + 500]
        for s, p in conn.execute(select(audit_event_patient.c.seq, audit_event_patient.c.patient_id)
                                 .where(audit_event_patient.c.seq.in_(chunk))):
            out.setdefault(s, []).append(p)
    return out


def _event_rows(conn: Connection, q: Select) -> list[dict[str, Any]]:
    rows = conn.execute(q.order_by(e.recorded, e.seq)).all()
    pats = _patients_for(conn, [r.seq for r in rows])
    return [{
        "recorded": _iso(r.recorded), "user_name": r.agent_name or "", "user_id": r.agent or "",
        "client_id": r.client_id or "", "organization": r.organization or "", "role": r.role or "",
        "purpose": r.purpose or "", "interaction": r.subtype, "outcome": r.outcome,
        "patients": " ".join(sorted(pats.get(r.seq, []))), "released": r.released,
        "withheld": r.withheld, "reason": r.break_glass_reason or "", "event_id": r.event_id,
        "_seq": r.seq, "_recorded": r.recorded,
    } for r in rows]


def _window(start: datetime, end: datetime) -> Select:
    return select(audit_event).where(e.recorded >= start, e.recorded < end)


def _public(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def break_glass(conn: Connection, start: datetime, end: datetime, opts: dict[str, str]) -> list[dict]:
    return _public(_event_rows(conn, _window(start, end).where(e.break_glass.is_(True))))


def no_relationship(conn: Connection, start: datetime, end: datetime, opts: dict[str, str]) -> list[dict]:
    return _public(_event_rows(conn, _window(start, end).where(e.relationship.is_(False))))


NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
_NHS_DIGITS = re.compile(r"\d{10}")


def _ids_with_identifier(conn: Connection, system: str | None, value: str) -> set[str]:
    """Ids of the Patients that carry the identifier (the ``identifier`` search index)."""
    t = search_token.c
    q = (select(resource_current.c.res_id)
         .join(search_token, t.rid == resource_current.c.rid)
         .where(t.res_type == "Patient", t.param == "identifier", t.code == value))
    if system:
        q = q.where(t.system == system)
    return set(conn.execute(q).scalars())


def patient_ids(conn: Connection, patient: str) -> list[str]:
    """The record ids a patient-history request means.

    ``patient`` is a Patient id (``p1`` or ``Patient/p1``), an NHS number (ten digits,
    spaces allowed) or ``system|value`` for any identifier. An NHS number or identifier
    is resolved to every Patient record carrying it (one person may hold several records,
    e.g. from several sources); ten digits are also kept as an id, since an id may be
    all digits. The audit log records ids (``audit_event_patient``), so this is how an
    IG lead answering a subject access request by NHS number finds the accesses.
    """
    text = patient.strip().removeprefix("Patient/")
    if "|" in text:
        system, _, value = text.partition("|")
        return sorted(_ids_with_identifier(conn, system.strip() or None, value.strip()))
    digits = text.replace(" ", "")
    if _NHS_DIGITS.fullmatch(digits):
        return sorted(_ids_with_identifier(conn, NHS_NUMBER, digits) | {digits})
    return [text] if text else []


def patient_history(conn: Connection, start: datetime, end: datetime, opts: dict[str, str]) -> list[dict]:
    patient = (opts.get("patient") or "").strip()
    if not patient.removeprefix("Patient/"):
        raise Invalid("The patient-history report needs a patient id or NHS number (--patient)")
    ids = patient_ids(conn, patient)
    if not ids:
        return []
    q = _window(start, end).where(e.seq.in_(
        select(audit_event_patient.c.seq).where(audit_event_patient.c.patient_id.in_(ids))))
    return _public(_event_rows(conn, q))


def high_volume(conn: Connection, start: datetime, end: datetime, opts: dict[str, str]) -> list[dict]:
    try:
        threshold = int(opts.get("threshold") or 50)
    except ValueError as exc:
        raise Invalid("threshold must be a whole number") from exc
    who = func.coalesce(e.agent, e.client_id)
    q = (select(who.label("who"), func.max(e.agent_name).label("name"),
                func.max(e.organization).label("org"), func.count(distinct(e.seq)).label("events"),
                func.count(distinct(audit_event_patient.c.patient_id)).label("patients"),
                func.min(e.recorded).label("first"), func.max(e.recorded).label("last"))
         .select_from(audit_event.join(audit_event_patient, audit_event_patient.c.seq == e.seq))
         .where(e.recorded >= start, e.recorded < end, who.is_not(None))
         .group_by(who)
         .having(func.count(distinct(audit_event_patient.c.patient_id)) >= threshold)
         .order_by(func.count(distinct(audit_event_patient.c.patient_id)).desc()))
    return [{"user_id": r.who, "user_name": r.name or "", "organization": r.org or "",
             "events": r.events, "patients": r.patients, "first": _iso(r.first),
             "last": _iso(r.last)} for r in conn.execute(q)]


def out_of_hours(conn: Connection, start: datetime, end: datetime, opts: dict[str, str]) -> list[dict]:
    day_start = int(opts.get("day_start") or 8)
    day_end = int(opts.get("day_end") or 18)
    out = []
    for row in _event_rows(conn, _window(start, end).where(e.agent.is_not(None))):
        ts = row["_recorded"]
        local = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(LOCAL_TZ)
        if local.weekday() >= 5 or not (day_start <= local.hour < day_end):
            row["local_time"] = local.strftime("%a %Y-%m-%d %H:%M")
            out.append(row)
    return _public(out)


_TITLES = {"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "professor", "nurse", "sister"}


def surname_of(name: str) -> str | None:
    words = [w for w in re.split(r"[\s,]+", name.strip()) if w and w.lower().strip(".") not in _TITLES]
    return words[-1].lower() if words else None


def _addresses(resource: dict[str, Any]) -> set[str]:
    out = set()
    for a in resource.get("address", []) or []:
        postcode = re.sub(r"\s+", "", str(a.get("postalCode", ""))).upper()
        line = (a.get("line") or [""])[0].strip().lower()
        if postcode and line:
            out.add(f"{line}|{postcode}")
    return out


def _families(resource: dict[str, Any]) -> set[str]:
    return {str(n.get("family", "")).lower() for n in resource.get("name", []) or [] if n.get("family")}


def same_surname_or_address(conn: Connection, start: datetime, end: datetime,
                            opts: dict[str, str]) -> list[dict]:
    patients: dict[str, dict[str, Any] | None] = {}
    practitioners: dict[str, set[str]] = {}

    def patient(pid: str) -> dict[str, Any] | None:
        if pid not in patients:
            res = read_current(conn, "Patient", pid)
            patients[pid] = res.data if res and not res.deleted else None
        return patients[pid]

    def prac_addresses(sds: str) -> set[str]:
        if sds not in practitioners:
            res = read_current(conn, "Practitioner", sds)
            practitioners[sds] = _addresses(res.data) if res and not res.deleted else set()
        return practitioners[sds]

    out = []
    for row in _event_rows(conn, _window(start, end).where(e.agent.is_not(None))):
        surname = surname_of(row["user_name"]) if row["user_name"] else None
        for pid in row["patients"].split():
            pat = patient(pid)
            if pat is None:
                continue
            matches = []
            if surname and surname in _families(pat):
                matches.append("surname")
            if _addresses(pat) & prac_addresses(row["user_id"]):
                matches.append("address")
            if matches:
                out.append({**row, "patients": pid, "match": " and ".join(matches)})
    return _public(out)


REPORTS: dict[str, Report] = {r.name: r for r in [
    Report("break-glass", "Break-glass accesses",
           "Every emergency override of a sharing restriction, with the reason given.",
           EVENT_COLUMNS, (), break_glass),
    Report("no-relationship", "Access without a care relationship",
           "Accesses where no established care relationship was found.",
           EVENT_COLUMNS, (), no_relationship),
    Report("patient-history", "Who has looked at a patient's record",
           "Every access to one patient's record (for subject access requests).",
           EVENT_COLUMNS, ("patient",), patient_history),
    Report("high-volume", "High-volume access by one user",
           "Users who looked at at least THRESHOLD different patients in the period.",
           ["user_id", "user_name", "organization", "events", "patients", "first", "last"],
           ("threshold",), high_volume),
    Report("out-of-hours", "Access out of hours",
           "Accesses outside DAY_START to DAY_END (UK time) on weekdays, and all weekend access.",
           ["local_time", *EVENT_COLUMNS], ("day_start", "day_end"), out_of_hours),
    Report("same-surname-or-address", "Patient shares the user's surname or address",
           "Accesses to a patient with the practitioner's surname or home address.",
           ["match", *EVENT_COLUMNS], (), same_surname_or_address),
]}


def run_report(conn: Connection, name: str, start: datetime, end: datetime,
               **options: str) -> list[dict[str, Any]]:
    report = REPORTS.get(name)
    if report is None:
        raise Invalid(f"Unknown report '{name}'; choose one of {', '.join(REPORTS)}")
    return report.run(conn, start, end, {k: v for k, v in options.items() if v is not None})


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _safe_cell(row.get(k, "")) for k in columns})
    return buf.getvalue()


def _safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formula injection (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
