"""``Patient/$everything`` (FHIR R4 patient-operation-everything.html).

The result is the patient's compartment (the official Patient CompartmentDefinition,
compartmentdefinition-patient.html: every resource whose compartment parameters
reference the patient, plus the Patient itself) and the Practitioner, Organization,
Location, Medication and Device resources those reference, and the Provenance of those
resources (where each came from). It is computed as one
set-based SQL query per page over the reference index (no per-resource queries),
narrowed by the disclosure gate's ``sql_filter`` before LIMIT, keyset-paged on rid
with a snapshot bound, and every resource still passes
:func:`exchange.pipeline.disclosure.release`. ``patient_id`` None is the type-level
operation (every patient's record, R4 patient-operation-everything.html without an id):
issue 3 makes it a call for system clients only, so a user or patient requester gets a 403
OperationOutcome even though consent would filter each resource; with authorisation
switched off (anonymous requester) it runs. Supports ``_since``, ``_type``, ``_count``.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    func,
    literal_column,
    or_,
    select,
    union,
)

from exchange.db.tables import resource_current as rc
from exchange.outcome import Forbidden, Gone, Invalid, NotFound, information
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release
from exchange.repository.store import read_current, read_many_current
from exchange.search import bundle as B
from exchange.search import cursor as cur
from exchange.search.query import QueryContext, gate_cond
from exchange.search.registry import PATIENT_COMPARTMENT
from exchange.search.tables import search_reference as sr
from exchange.search.values import date_range
from exchange.settings import Settings

REFERENCED_TYPES = ("Practitioner", "Organization", "Location", "Medication", "Device")
ALLOWED_PARAMS = {"_since", "_type", "_count", "_format", "_pretty"}


def everything(
    conn: Connection,
    ctx: RequestContext,
    settings: Settings,
    *,
    patient_id: str | None,
    params: list[tuple[str, str]],
    base_url: str,
) -> bytes:
    """The first page of Patient/$everything as searchset Bundle bytes."""
    if patient_id is None:
        _system_only(ctx)
    state: dict[str, Any] = {"pid": patient_id, "types": None, "since": None,
                             "n": settings.default_page_size}
    for name, value in params:
        if name not in ALLOWED_PARAMS:
            raise Invalid(f"$everything does not support parameter {name!r}", code="not-supported",
                          expression=name)
        if name == "_since":
            if date_range(value) is None or "T" not in value:
                raise Invalid("_since must be an instant", expression="_since")
            state["since"] = value
        elif name == "_type":
            state["types"] = sorted({t.strip() for t in value.split(",") if t.strip()})
        elif name == "_count":
            try:
                state["n"] = max(1, min(int(value), settings.max_page_size))
            except ValueError as exc:
                raise Invalid("_count must be an integer", expression="_count") from exc
    if patient_id is not None:
        current = read_current(conn, "Patient", patient_id)
        if current is None:
            raise NotFound(f"Patient/{patient_id} is not known")
        if current.deleted:
            raise Gone(f"Patient/{patient_id} was deleted")
        ctx.patients.add(patient_id)
    state["m"] = conn.execute(select(func.max(rc.c.rid))).scalar() or 0
    return _page(conn, ctx, settings, state, after=None, base_url=base_url, this_cursor=None, params=params)


def everything_page(conn: Connection, ctx: RequestContext, settings: Settings, payload: dict[str, Any],
                    cursor: str, base_url: str) -> bytes:
    """A later page (reached from :func:`exchange.search.service.search_page`)."""
    state = payload["ev"]
    if state.get("pid"):
        ctx.patients.add(state["pid"])
    else:
        _system_only(ctx)
    return _page(conn, ctx, settings, state, after=payload.get("k"), base_url=base_url,
                 this_cursor=cursor, params=None)


#: requester kinds allowed the type-level operation (anonymous: authorisation is off)
TYPE_LEVEL_KINDS = frozenset({"system", "anonymous"})


def _system_only(ctx: RequestContext) -> None:
    """Type-level ``Patient/$everything`` (every patient's record) is for system clients."""
    if ctx.requester.kind not in TYPE_LEVEL_KINDS:
        raise Forbidden("Patient/$everything at type level (all patients) is for system clients only; "
                        "use Patient/{id}/$everything")


#: every type that can be a member: the compartment's resource types and the Patient
MEMBER_TYPES: tuple[str, ...] = tuple(sorted(set(PATIENT_COMPARTMENT) | {"Patient"}))


def _member_types(types: list[str] | None) -> list[str]:
    return [t for t in MEMBER_TYPES if types is None or t in types]


def _compartment_params() -> ColumnElement[bool]:
    """``search_reference`` rows that place their resource in *a* Patient compartment:
    the reference parameters of the Patient CompartmentDefinition
    (compartmentdefinition-patient.html), one ``res_type = T AND param IN (...)`` term per
    resource type.

    The Patient CompartmentDefinition is fixed at import, and this condition names no
    patient, so it is built once per process (66 terms: building it on every request took
    about a third of the handler's time under cProfile); which patient's compartment is added per
    request by :func:`_page` (``target_id`` bound to the request's patient id). SQLAlchemy
    clause elements are immutable, so sharing one between statements and threads is safe.
    """
    return or_(*(and_(sr.c.res_type == _sql_literal(t), sr.c.param.in_([_sql_literal(p) for p in params]))
                 for t, params in sorted(PATIENT_COMPARTMENT.items())))


#: what a resource type or search parameter code from the CompartmentDefinition may look like
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _sql_literal(value: str) -> ColumnElement[str]:
    """``value`` rendered into the SQL text as a string literal (not a bound parameter), so
    the ~170 constants of the compartment condition are fixed in the compiled statement
    that SQLAlchemy caches instead of being bound again on every execution. Only names
    (letters, digits, ``-``, ``_``) from the shipped CompartmentDefinition reach here."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"not a FHIR type or parameter name: {value!r}")
    return literal_column(f"'{value}'", String)


_IN_SOME_COMPARTMENT = _compartment_params()


def _page(conn: Connection, ctx: RequestContext, settings: Settings, state: dict[str, Any], *,
          after: int | None, base_url: str, this_cursor: str | None,
          params: list[tuple[str, str]] | None) -> bytes:
    qc = QueryContext(conn, ctx, base_url)
    pid: str | None = state["pid"]
    wanted: list[str] | None = state["types"]
    count: int = state["n"]

    # 1. compartment members (every type, the _type filter applies to the output only)
    ref_conds = [sr.c.target_type == "Patient"]
    if pid is not None:
        ref_conds.append(sr.c.target_id == pid)
    in_compartment = select(sr.c.rid).where(*ref_conds, _IN_SOME_COMPARTMENT)
    patients = select(rc.c.rid).where(rc.c.res_type == "Patient")
    if pid is not None:
        patients = patients.where(rc.c.res_id == pid)
    m = rc.alias("m")
    member_conds: list[Any] = [m.c.rid.in_(union(in_compartment, patients)), m.c.deleted.is_(False)]
    g = gate_cond(qc, _member_types(None), m.c.res_type, m.c.rid)
    if g is not None:
        member_conds.append(g)
    members = select(m.c.rid).where(*member_conds)

    # 2. what visible members reference (Practitioner, Organization, ...)
    r2 = sr.alias("r2")
    referenced = select(r2.c.rid.label("src"), r2.c.target_type, r2.c.target_id).where(
        r2.c.rid.in_(members), r2.c.target_type.in_(REFERENCED_TYPES)
    ).subquery()
    t = rc.alias("t")
    targets = select(t.c.rid).select_from(
        referenced.join(t, and_(t.c.res_type == referenced.c.target_type, t.c.res_id == referenced.c.target_id))
    )

    # 2b. the Provenance of visible members (which source system wrote them, from which
    #     feed): a Provenance is in the compartment only when it targets the Patient itself
    #     (R4 Provenance "patient" parameter), but the record's origin is part of "everything"
    pv, mm = sr.alias("pv"), rc.alias("mm")
    provenance = select(pv.c.rid).select_from(
        pv.join(mm, and_(pv.c.target_type == mm.c.res_type, pv.c.target_id == mm.c.res_id))
    ).where(pv.c.res_type == "Provenance", pv.c.param == "target", mm.c.rid.in_(members))

    # 3. the page: members, their references and provenance, filtered, narrowed, keyset on rid
    out_types = sorted(set(_member_types(wanted)) | {x for x in REFERENCED_TYPES if wanted is None or x in wanted})
    conds: list[Any] = [
        rc.c.rid.in_(union(members, targets, provenance)),
        rc.c.deleted.is_(False),
        rc.c.res_type.in_(out_types),
        rc.c.rid <= state["m"],
    ]
    g = gate_cond(qc, out_types, rc.c.res_type, rc.c.rid)
    if g is not None:
        conds.append(g)
    if state.get("since"):
        since = date_range(state["since"])[0]  # type: ignore[index]
        conds.append(rc.c.last_updated >= (since.replace(tzinfo=UTC) if qc.is_pg else since))
    if after is not None:
        conds.append(rc.c.rid > int(after))
    rows = [r for (r,) in conn.execute(select(rc.c.rid).where(*conds).order_by(rc.c.rid).limit(count + 1))]
    more = len(rows) > count
    rows = rows[:count]

    released = release(conn, ctx, read_many_current(conn, rows))
    entries = [B.entry_bytes(base_url, res, "match", res.content or b"{}") for res in released]
    if ctx.informational:  # consent notes for the client
        entries.append(B.outcome_entry([information(n) for n in ctx.informational]))

    def link(k: int | None) -> str:
        token = cur.encode(settings, ctx, {"ev": state, "k": k})
        return f"{base_url.rstrip('/')}?_getpages={token}"

    op_path = f"Patient/{pid}/$everything" if pid is not None else "Patient/$everything"
    if this_cursor is None:
        self_link = B.self_url(base_url, op_path, params or [], {})
    else:
        self_link = f"{base_url.rstrip('/')}?_getpages={this_cursor}"
    links = [("self", self_link), ("first", link(None))]
    if more and rows:
        links.append(("next", link(rows[-1])))
    return B.searchset(total=None, links=links, entries=entries)
