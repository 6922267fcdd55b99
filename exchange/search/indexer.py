"""Search index maintenance (FHIR R4 search.html: values are extracted when written).

:func:`index_resource` is called by the write path (``exchange.repository.store``)
inside the write transaction: it deletes the index rows of ``rid`` and writes new ones
extracted with the compiled FHIRPath expressions of every search parameter of the
type (:mod:`exchange.search.registry`). :func:`reindex` rebuilds the index (after a
custom SearchParameter is registered), driven by ``exchange search reindex``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.search import values as V
from exchange.search.fhirpath import FhirPathError, element_names, first_elements
from exchange.search.registry import REGISTRY, Component
from exchange.search.tables import ALL_TABLES, TABLE_BY_TYPE


def _rows_for(ptype: str, vals: list[Any]) -> list[dict[str, Any]]:
    if ptype == "token":
        return [{"system": V.clip(s), "code": V.clip(c), "text": t} if not of else
                {"system": V.clip(s), "code": V.clip(c), "text": t, "_oftype": True}
                for s, c, t, of in V.tokens(vals)]
    if ptype == "string":
        return [{"norm": V.clip(V.normalise(s)), "exact": s} for s in V.strings(vals)]
    if ptype == "date":
        return [{"low": lo, "high": hi} for lo, hi in V.dates(vals)]
    if ptype == "reference":
        return [{"target_type": t, "target_id": i, "url": V.clip(u)} for t, i, u in V.references(vals)]
    if ptype == "quantity":
        return [{"low": lo, "high": hi, "system": V.clip(s), "code": V.clip(c)}
                for lo, hi, s, c in V.quantities(vals)]
    if ptype == "number":
        return [{"low": lo, "high": hi} for lo, hi, _s, _c in V.quantities(vals)]
    if ptype == "uri":
        return [{"value": V.clip(u)} for u in V.uris(vals)]
    return []


@dataclass
class _Plan:
    #: (code, type, compiled expression, top-level element names of which a resource
    #: needs one for the expression to select anything; None = always evaluate)
    simple: list[tuple[str, str, Callable[[Any], list[Any]], frozenset[str] | None]]
    composite: list[tuple[str, Callable[[Any], list[Any]], list[Component], frozenset[str] | None]]
    generation: int


_plans: dict[str, _Plan] = {}
_plan_lock = threading.Lock()


def _needs(expression: str, resource_type: str) -> frozenset[str] | None:
    try:
        return first_elements(expression, resource_type)
    except FhirPathError:  # pragma: no cover - fn_for compiled it, so it parses
        return None


def _plan(resource_type: str) -> _Plan:
    gen = REGISTRY.generation
    plan = _plans.get(resource_type)
    if plan is not None and plan.generation == gen:
        return plan
    simple: list[tuple[str, str, Callable[[Any], list[Any]], frozenset[str] | None]] = []
    composite: list[tuple[str, Callable[[Any], list[Any]], list[Component], frozenset[str] | None]] = []
    for sp in REGISTRY.params_for(resource_type):
        fn = sp.fn_for(resource_type)
        if fn is None:
            continue
        needs = _needs(sp.expression, resource_type)
        if sp.type == "composite":
            composite.append((sp.code, fn, REGISTRY.components_for(sp, resource_type), needs))
        else:
            simple.append((sp.code, sp.type, fn, needs))
    plan = _Plan(simple, composite, gen)
    with _plan_lock:
        _plans[resource_type] = plan
    return plan


_names_of_key: dict[str, tuple[str, ...]] = {}


def _present(resource: dict[str, Any]) -> set[str]:
    """The element names a member step can find at the top of ``resource``."""
    out: set[str] = set()
    for key in resource:
        names = _names_of_key.get(key)
        if names is None:
            names = element_names(key) if isinstance(key, str) else ()
            if len(_names_of_key) < 10_000:  # bounded: keys come from outside
                _names_of_key[key] = names
        out.update(names)
    return out


def extract(resource_type: str, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Index rows by parameter type (each row has param, grp and the typed columns).

    Parameters whose expression cannot select anything from this resource (none of the
    top-level elements it starts from is present: :func:`fhirpath.first_elements`) are
    skipped without evaluation; the rows are the same as evaluating every one."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLE_BY_TYPE}
    plan = _plan(resource_type)
    present = _present(resource)
    for code, ptype, fn, needs in plan.simple:
        if needs is not None and needs.isdisjoint(present):
            continue
        vals = fn(resource)
        if not vals:
            continue
        for row in _rows_for(ptype, vals):
            row["param"] = code + ":of-type" if row.pop("_oftype", False) else code
            row["grp"] = 0
            out[ptype].append(row)
    for code, base_fn, comps, needs in plan.composite:
        if needs is not None and needs.isdisjoint(present):
            continue
        for grp, item in enumerate(base_fn(resource), start=1):
            parts = [[r for r in _rows_for(c.type, c.fn(item)) if not r.pop("_oftype", False)] for c in comps]
            if not all(parts):
                continue  # a composite matches only when every component has a value
            for i, (comp, rows) in enumerate(zip(comps, parts, strict=True)):
                for row in rows:
                    row["param"] = f"{code}${i}"
                    row["grp"] = grp
                    out[comp.type].append(row)
    return out


_VALUE_COLS: dict[str, tuple[str, ...]] = {
    ptype: tuple(c.name for c in table.columns if c.name not in ("rid", "res_type", "param", "grp"))
    for ptype, table in TABLE_BY_TYPE.items()
}


def index_resource(conn: Connection, rid: int, resource_type: str, resource: dict[str, Any] | None) -> None:
    """(Re)write the index rows of resource ``rid``; ``resource`` None = deleted (clear rows).

    On PostgreSQL the deletes and inserts go in one statement (data-modifying CTEs), so
    re-indexing costs one round trip; SQLite runs in-process and uses plain statements."""
    rows_by_type = extract(resource_type, resource) if resource is not None else {}
    if conn.dialect.name == "postgresql":
        _write_pg(conn, rid, resource_type, rows_by_type)
        return
    for table in ALL_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE rid = ?", (rid,))
    for ptype, rows in rows_by_type.items():
        if rows:
            cols = _VALUE_COLS[ptype]
            sql = (f"INSERT INTO {TABLE_BY_TYPE[ptype].name} (rid, res_type, param, grp, {', '.join(cols)}) "
                   f"VALUES ({', '.join('?' * (4 + len(cols)))})")
            data = [(rid, resource_type, r["param"], r["grp"], *(_sqlite(r.get(c)) for c in cols)) for r in rows]
            conn.exec_driver_sql(sql, data)


def _sqlite(v: Any) -> Any:
    """Datetimes in SQLAlchemy's SQLite storage format, so comparisons stay lexical."""
    return v.isoformat(sep=" ", timespec="microseconds") if isinstance(v, datetime) else v


_PG_MAX_ROWS = 2000  # keeps one statement well under PostgreSQL's 65,535 bind parameters


def _write_pg(conn: Connection, rid: int, resource_type: str, rows_by_type: dict[str, list[dict[str, Any]]]) -> None:
    if sum(len(r) for r in rows_by_type.values()) > _PG_MAX_ROWS:  # a huge resource: in pieces
        _write_pg(conn, rid, resource_type, {})
        for ptype, rows in rows_by_type.items():
            for i in range(0, len(rows), _PG_MAX_ROWS):
                _insert_pg(conn, rid, resource_type, ptype, rows[i : i + _PG_MAX_ROWS])
        return
    parts: list[str] = []
    params: list[Any] = []
    for i, table in enumerate(ALL_TABLES):
        parts.append(f"d{i} AS (DELETE FROM {table.name} WHERE rid = %s)")
        params.append(rid)
    for ptype, rows in rows_by_type.items():
        if not rows:
            continue
        cols = _VALUE_COLS[ptype]
        one = "(" + ", ".join(["%s"] * (4 + len(cols))) + ")"
        parts.append(
            f"i_{ptype} AS (INSERT INTO {TABLE_BY_TYPE[ptype].name} (rid, res_type, param, grp, "
            f"{', '.join(cols)}) VALUES {', '.join([one] * len(rows))})"
        )
        for r in rows:
            params.extend((rid, resource_type, r["param"], r["grp"], *(r.get(c) for c in cols)))
    conn.exec_driver_sql("WITH " + ", ".join(parts) + " SELECT 1", tuple(params))


def _insert_pg(conn: Connection, rid: int, resource_type: str, ptype: str, rows: list[dict[str, Any]]) -> None:
    cols = _VALUE_COLS[ptype]
    one = "(" + ", ".join(["%s"] * (4 + len(cols))) + ")"
    params: list[Any] = []
    for r in rows:
        params.extend((rid, resource_type, r["param"], r["grp"], *(r.get(c) for c in cols)))
    conn.exec_driver_sql(
        f"INSERT INTO {TABLE_BY_TYPE[ptype].name} (rid, res_type, param, grp, {', '.join(cols)}) "
        f"VALUES {', '.join([one] * len(rows))}",
        tuple(params),
    )


def reindex(engine: Engine, resource_type: str | None = None, *, batch: int = 500) -> int:
    """Rebuild the index rows of every current resource (of ``resource_type``); returns a count."""
    from exchange.db.engine import write_tx

    last = 0
    done = 0
    while True:
        with write_tx(engine) as conn:
            q = (
                select(rc.c.rid, rc.c.res_type, rv.c.content)
                .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
                .where(rc.c.rid > last, rc.c.deleted.is_(False))
                .order_by(rc.c.rid)
                .limit(batch)
            )
            if resource_type:
                q = q.where(rc.c.res_type == resource_type)
            rows = conn.execute(q).all()
            if not rows:
                return done
            for rid, rtype, content in rows:
                index_resource(conn, rid, rtype, orjson.loads(bytes(content)) if content else None)
            last = rows[-1].rid
            done += len(rows)
