"""The search entry points the HTTP layer calls (FHIR R4 search.html, http.html#search).

* :func:`search` -- type, system (``_type``) and compartment search; returns the
  searchset Bundle bytes;
* :func:`search_page` -- a page reached through a signed paging cursor;
* :func:`find_rids` -- the matches of conditional create / update / delete.

Every match and every include passes the disclosure choke point
(:func:`exchange.pipeline.disclosure.release`); every query ANDs the gate's
``sql_filter`` before LIMIT, so pages, totals and conditions only see what the
requester may see. No web-framework types cross this boundary.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from exchange.db.tables import resource_current as rc
from exchange.outcome import Invalid, information
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release
from exchange.repository.store import read_many_current
from exchange.search import bundle as B
from exchange.search import cursor as cur
from exchange.search.includes import resolve_includes
from exchange.search.params import SearchRequest, parse_request
from exchange.search.query import (
    QueryContext,
    compartment_cond,
    criteria_conditions,
    decode_key,
    encode_key,
    gate_cond,
    keyset_cond,
    sort_expression,
)
from exchange.search.registry import SERVED_TYPES
from exchange.settings import Settings


def _types(resource_type: str | None, req: SearchRequest) -> list[str]:
    if resource_type:
        return [resource_type]
    types = req.types or list(SERVED_TYPES)
    unknown = [t for t in types if not t[:1].isupper() or not t.isalnum()]
    if unknown:
        raise Invalid(f"_type: invalid resource type(s) {unknown}", expression="_type")
    return types


def _page_size(settings: Settings, req: SearchRequest) -> int:
    n = settings.default_page_size if req.count is None else req.count
    return max(0, min(n, settings.max_page_size))


def _base_conditions(qc: QueryContext, types: list[str], req: SearchRequest,
                     compartment: tuple[str, str] | None) -> list[Any]:
    conds: list[Any] = criteria_conditions(qc, types, req.criteria, rc.c.rid, driven=compartment is not None)
    if qc.custom_plans:
        # psycopg prepares a statement after 5 executions and PostgreSQL may then switch to
        # a generic plan, which cannot see which criterion is selective (query.py module doc)
        qc.conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    if compartment is not None:
        conds.append(compartment_cond(types, compartment, rc.c.rid))
    # with a driving rid list, keep the planner off the (res_type, res_id) index (query.py module doc)
    res_type = qc.unindexed(rc.c.res_type) if qc.correlate and (qc.driver or compartment) else rc.c.res_type
    conds[:0] = [res_type.in_(types) if len(types) > 1 else res_type == types[0], rc.c.deleted.is_(False)]
    g = gate_cond(qc, types, rc.c.res_type, rc.c.rid)
    if g is not None:
        conds.append(g)
    return conds


def search(
    conn: Connection,
    ctx: RequestContext,
    settings: Settings,
    *,
    resource_type: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
    lenient: bool = False,
    base_url: str,
) -> bytes:
    """Run a search and return the first page as searchset Bundle bytes."""
    req = parse_request(params)
    types = _types(resource_type, req)
    qc = QueryContext(conn, ctx, base_url, lenient)
    conds = _base_conditions(qc, types, req, compartment)  # validates, collects unknown params
    kept = [(n, v) for n, v in params if n not in qc.unknown]
    state = {
        "rt": resource_type,
        "ty": types if resource_type is None else None,
        "p": kept,
        "c": list(compartment) if compartment else None,
        "n": _page_size(settings, req),
        "m": None,  # the snapshot bound: read by _run together with the first page
    }
    return _run(qc, settings, state, position=None, direction="next", this_cursor=None,
                conds=conds if not qc.unknown else None)


def search_page(conn: Connection, ctx: RequestContext, settings: Settings, cursor: str, base_url: str) -> bytes:
    """A page reached through a ``_getpages`` cursor from a previous searchset's links."""
    payload = cur.decode(settings, ctx, cursor)
    if "ev" in payload:  # a Patient/$everything page
        from exchange.operations.everything import everything_page

        return everything_page(conn, ctx, settings, payload, cursor, base_url)
    qc = QueryContext(conn, ctx, base_url, lenient=True)
    state = payload["s"]
    return _run(qc, settings, state, position=payload.get("k"), direction=payload.get("d", "next"),
                this_cursor=cursor)


def find_rids(conn: Connection, ctx: RequestContext, resource_type: str, params: list[tuple[str, str]]) -> list[int]:
    """rids of the current resources matching ``params`` (conditional interactions)."""
    req = parse_request(params)
    qc = QueryContext(conn, ctx, "", lenient=False)
    conds = _base_conditions(qc, [resource_type], req, None)
    return [r for (r,) in conn.execute(select(rc.c.rid).where(*conds).order_by(rc.c.rid))]


def _max_rid() -> Any:
    """The highest rid in ``resource_current`` (a scalar subquery, evaluated once)."""
    every = rc.alias("snapshot_rc")
    return select(func.max(every.c.rid)).scalar_subquery()


def _run(qc: QueryContext, settings: Settings, state: dict[str, Any], *, position: list[Any] | None,
         direction: str, this_cursor: str | None, conds: list[Any] | None = None) -> bytes:
    req = parse_request([tuple(p) for p in state["p"]])  # type: ignore[misc]
    resource_type: str | None = state["rt"]
    types = [resource_type] if resource_type else list(state["ty"])
    compartment = tuple(state["c"]) if state.get("c") else None
    count: int = state["n"]
    if conds is None:
        conds = _base_conditions(qc, types, req, compartment)  # type: ignore[arg-type]
    # Later pages only see resources up to the highest rid that existed at the first page
    # (docs/search.md, "Paging"). The first page reads that bound in its own query: one
    # statement less, and in the read transaction's snapshot (REPEATABLE READ on
    # PostgreSQL, a read transaction on SQLite) every visible rid is <= it anyway.
    bound: int | None = state["m"]
    if bound is not None:
        conds = [*conds, rc.c.rid <= bound]

    keys: list[tuple[Any, bool, str]] = []
    for code, desc in req.sort:
        expr, kind = sort_expression(types, code, desc)
        keys.append((expr, desc, kind))
    keys.append((rc.c.rid, False, "int"))
    backwards = direction == "prev"
    order_keys = [(e, d != backwards) for e, d, _k in keys]

    total = None
    if req.total in ("accurate", "estimate") or req.summary == "count" or count == 0:
        total = qc.conn.execute(select(func.count()).select_from(rc).where(*conds)).scalar_one()

    rows: list[Any] = []
    if req.summary != "count" and count > 0:
        cols = [rc.c.rid, *(e for e, _d, _k in keys[:-1])]
        if bound is None:
            cols.append(_max_rid())
        q = select(*cols).where(*conds)
        if position is not None:
            pos = [decode_key(k, v) for (_e, _d, k), v in zip(keys, position, strict=True)]
            q = q.where(keyset_cond(order_keys, pos))
        q = q.order_by(*(e.desc() if d else e.asc() for e, d in order_keys)).limit(count + 1)
        rows = list(qc.conn.execute(q))
        if bound is None and rows:
            bound = rows[0][-1]
            rows = [row[:-1] for row in rows]
    if bound is None:  # no page was read (_count=0, _summary=count) or it was empty
        bound = qc.conn.execute(select(_max_rid())).scalar() or 0
    state["m"] = bound
    more = len(rows) > count
    rows = rows[:count]
    if backwards:
        rows.reverse()

    def key_of(row: Any) -> list[Any]:
        return [encode_key(v) for v in (*row[1:], row[0])]

    def link(k: list[Any] | None, d: str) -> str:
        token = cur.encode(settings, qc.ctx, {"s": state, "k": k, "d": d})
        return f"{qc.base_url.rstrip('/')}?_getpages={token}"

    match_rids = [r[0] for r in rows]
    matches = release(qc.conn, qc.ctx, read_many_current(qc.conn, match_rids))
    cap = settings.max_include
    include_rids = resolve_includes(qc, req.includes, [m.rid for m in matches], cap)
    included = release(qc.conn, qc.ctx, read_many_current(qc.conn, include_rids))

    entries = [B.entry_bytes(qc.base_url, m, "match", B.shape(m, req.summary, req.elements)) for m in matches]
    entries += [B.entry_bytes(qc.base_url, m, "include", B.shape(m, req.summary, req.elements)) for m in included]
    notices = [information(n) for n in qc.ctx.informational]  # consent notes for the client
    if qc.issues or notices:
        entries.append(B.outcome_entry(qc.issues + notices))

    first_page = position is None and not backwards
    links: list[tuple[str, str]] = [
        ("self", B.self_url(qc.base_url, resource_type, [tuple(p) for p in state["p"]], {})
         if first_page else link(position, direction) if this_cursor is None else
         f"{qc.base_url.rstrip('/')}?_getpages={this_cursor}"),
        ("first", link(None, "next")),
    ]
    has_next = more if not backwards else True
    has_prev = (more if backwards else not first_page) and bool(rows)
    if has_next and rows:
        links.append(("next", link(key_of(rows[-1]), "next")))
    if has_prev:
        links.append(("previous", link(key_of(rows[0]), "prev")))
    return B.searchset(total=total, links=links, entries=entries)


__all__ = ["find_rids", "search", "search_page"]
