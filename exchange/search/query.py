"""Building the SQL of a search over the typed index tables (FHIR R4 search.html).

A search is ``SELECT rid FROM resource_current WHERE res_type IN (...) AND NOT deleted
AND <criteria> AND <gate filter>``, every criterion being ``rid IN (index subquery)``:
parameter types and modifiers (:mod:`exchange.search.conditions`), chained parameters
(search.html#chaining, any depth), reverse chaining ``_has`` (search.html#has),
composites (search.html#composite), ``:missing``, ``:not``, compartments
(search.html#compartment) and ``_sort`` expressions with keyset paging. The disclosure
gate's ``sql_filter`` is ANDed into every subquery that selects other resources too
(chain targets, ``_has`` sources), so a condition can only be met by visible resources.

Shape of the criteria (both databases). An uncorrelated ``rid IN (subquery)`` per
criterion let the database pick the order, and it picked badly: SQLite materialises
every such subquery, so ``Observation?patient=P&code=C&date=geD`` built every
Observation row with code C and every date row after D (15 ms) to keep the one
Observation of P; PostgreSQL, once psycopg has prepared the statement (after 5
executions) and the planner has switched to a generic plan (values unknown), estimated
the code lookup at one row and drove from it (12-19 ms). So when several criteria are
ANDed (or a compartment already narrows the rows) exactly one, the *driver*, the
criterion expected to be the most selective (:func:`selectivity_rank`), stays ``rid IN
(subquery)``; every other criterion is a correlated ``EXISTS`` probe (``NOT EXISTS``
for ``:not`` / ``:missing=true``) answered through the index table's ``rid`` index, so
the work is proportional to the driver's rows (0.02-0.2 ms for that search). The
conditions are logically the same (``rid`` is never NULL, so ``NOT IN`` and ``NOT
EXISTS`` agree). To keep each database on that plan whatever its statistics: inside a
probe, and on ``resource_current`` when a driver exists, the leading columns of the
other indexes (``res_type``, ``target_id``) are wrapped so no index matches them
(:meth:`QueryContext.unindexed`: SQLite's unary ``+``, sqlite.org/optoverview.html
"Disqualifying WHERE clause terms using unary-+"; ``|| ''`` on PostgreSQL), and on
PostgreSQL a probe carries ``OFFSET 0``, which stops the planner from flattening it
into a semi-join it could reorder. On PostgreSQL the driver and probes are used only
when the driver is :data:`SELECTIVE` (``_id``, a reference, an identifier) or a
compartment drives; otherwise its planner orders the ``IN``-subqueries by its
statistics (better than probing from a broad driver) and the transaction is told to
plan with the values (``qc.custom_plans``). docs/search.md ("Shape of the criteria")
shows the plans and the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from exchange.db.tables import resource_current as rc
from exchange.outcome import Invalid, Issue
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import gate_of, narrow
from exchange.search import conditions as C
from exchange.search.params import Criterion, split_escaped
from exchange.search.registry import PATIENT_COMPARTMENT, REGISTRY, SearchParam
from exchange.search.tables import TABLE_BY_TYPE, search_reference
from exchange.search.values import MIN_DT


@dataclass
class QueryContext:
    conn: Connection
    ctx: RequestContext
    base_url: str
    lenient: bool = False
    issues: list[Issue] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)
    #: set by :func:`criteria_conditions`: a criterion is an uncorrelated ``rid IN`` list,
    #: so the outer query should be driven by it (module doc)
    driver: bool = False
    #: set by :func:`criteria_conditions`: several ``IN``-subqueries for PostgreSQL's
    #: planner to order, which only its custom plans (values known) do well (module doc)
    custom_plans: bool = False

    @property
    def is_pg(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    @property
    def correlate(self) -> bool:
        """Whether non-driving criteria become correlated probes (module doc); always, the
        switch lets the tests compare the results of both forms."""
        return True

    def unindexed(self, col: Any) -> Any:
        """``col`` in a form no index matches: SQLite's no-op unary ``+``
        (sqlite.org/optoverview.html, "Disqualifying WHERE clause terms using unary-+"), on
        PostgreSQL (no unary ``+`` for text) the concatenation with ``''``."""
        if self.is_pg:
            return col.op("||", return_type=col.type)(literal_column("''"))
        return UnaryExpression(col, operator=operators.custom_op("+"), type_=col.type)


class _Unknown(Exception):
    """A parameter name that no served search parameter answers."""


def gate_cond(qc: QueryContext, types: list[str], type_col: Any, rid_col: Any) -> ColumnElement[bool] | None:
    """The disclosure gate's SQL narrowing for rows of ``types`` (None = nothing to add)."""
    if getattr(gate_of(qc.ctx), "type_independent", False) or len(types) == 1:
        # one condition for all types (e.g. $everything over the whole compartment)
        return narrow(qc.conn, qc.ctx, types[0] if len(types) == 1 else None, rid_col)
    parts = [(t, narrow(qc.conn, qc.ctx, t, rid_col)) for t in types]
    if all(f is None for _, f in parts):
        return None
    if len(parts) == 1:
        return parts[0][1]
    return or_(*(and_(type_col == t, f if f is not None else true()) for t, f in parts))


def _with_gate(qc: QueryContext, types: list[str], type_col: Any, rid_col: Any, *conds: Any) -> list[Any]:
    g = gate_cond(qc, types, type_col, rid_col)
    return [*conds, g] if g is not None else list(conds)


def _same_param(types: list[str], code: str) -> SearchParam:
    sps = [REGISTRY.get(t, code) for t in types]
    if not sps or any(sp is None for sp in sps) or len({sp.type for sp in sps if sp}) != 1:
        raise _Unknown(code)
    return sps[0]  # type: ignore[return-value]


#: the leading columns of the index tables' value indexes (``(res_type, param, ...)``,
#: ``search_reference (target_id, target_type)``) and of ``resource_current (res_type, res_id)``
_LEADING = frozenset({"res_type", "target_id"})


def _probe_view(qc: QueryContext, t: Any, correlated: bool) -> Any:
    """``t`` as the conditions of a correlated probe see it: leading index columns
    :func:`unindexed`, so the probe can only go through the ``rid`` index / rowid."""
    if not correlated:
        return t
    return SimpleNamespace(c=SimpleNamespace(**{c.key: qc.unindexed(c) if c.key in _LEADING else c for c in t.c}))


def _member(qc: QueryContext, rid_col: Any, sub: Any, sub_rid: Any, correlated: bool) -> ColumnElement[bool]:
    """``rid_col`` is one of the rids ``sub`` selects (``sub_rid``): ``IN`` or a correlated ``EXISTS``."""
    if correlated:
        sub = sub.where(sub_rid == rid_col)
        # OFFSET 0 keeps PostgreSQL from flattening the probe into a join it may reorder
        return (sub.offset(literal_column("0")) if qc.is_pg else sub).exists()
    return rid_col.in_(sub)


#: how selective a criterion is expected to be, by parameter type (lower = fewer rows):
#: an id or a reference names one resource; a token code or exact string a few; ranges
#: (dates, quantities) and substring matches often a large share of the type
_RANK_BY_TYPE = {"reference": 1, "token": 2, "uri": 3, "string": 4, "date": 7, "quantity": 7, "number": 7,
                 "composite": 6}
#: a rank at or below this names one or a few resources (``_id``, a reference, an
#: identifier): on PostgreSQL only such a criterion drives probes (module doc)
SELECTIVE = 1
#: token parameters over small code sets or booleans: a value matches a large share of
#: the type (``status=final``, ``gender=female``), so they never drive before a code
_COARSE_TOKENS = frozenset({
    "status", "gender", "active", "intent", "priority", "category", "clinical-status",
    "verification-status", "class", "deceased", "criticality", "severity", "_tag", "_security",
})


def selectivity_rank(types: list[str], crit: Criterion) -> int | None:
    """Expected selectivity of ``crit`` (lower = more selective); None if it cannot drive
    a query (a negation: ``:not``, ``:missing``), or is unknown (reported elsewhere)."""
    name = crit.name
    if name.startswith("_has:"):
        return 5
    head, _, chain = name.partition(".")
    code, _, modifier = head.partition(":")
    if code == "_id":
        return None if modifier or chain else 0
    if modifier in ("not", "missing"):
        return None
    if chain:
        return 5
    sp = REGISTRY.get(types[0], code) if types else None
    if sp is None:
        return None
    if sp.type == "token":
        if modifier == "text":
            return 8
        # "system|" alone matches every value of a code system
        if any(v.endswith("|") and not v.endswith("\\|") for v in crit.values) or code in _COARSE_TOKENS:
            return 6
        if code == "identifier" or code.endswith("-identifier") or modifier == "of-type":
            return SELECTIVE
    if sp.type == "string" and modifier == "contains":
        return 8
    if sp.type == "string" and modifier == "exact":
        return 3
    return _RANK_BY_TYPE.get(sp.type, 7)


def criteria_conditions(
    qc: QueryContext, types: list[str], criteria: list[Criterion], rid_col: Any, *, driven: bool = False
) -> list[ColumnElement[bool]]:
    """Conditions for every criterion (ANDed); unknown names raise or are reported (lenient).

    ``driven``: another ANDed condition (a compartment) already selects few rows, so
    every criterion is a correlated probe; otherwise, with several criteria, the most
    selective one drives and the others probe; on PostgreSQL only when that one is
    :data:`SELECTIVE`, else its planner orders ``IN``-subqueries with custom plans
    (``qc.custom_plans``; module doc).
    """
    driver: int | None = None
    probes = qc.correlate and driven
    if qc.correlate and not driven and len(criteria) > 1:
        ranks = [selectivity_rank(types, c) for c in criteria]
        candidates = [(r, i) for i, r in enumerate(ranks) if r is not None]
        if candidates and (not qc.is_pg or min(candidates)[0] <= SELECTIVE):
            driver, probes = min(candidates)[1], True
    if qc.is_pg and not probes and len(criteria) > 1:
        qc.custom_plans = True
    out: list[ColumnElement[bool]] = []
    for i, crit in enumerate(criteria):
        correlated = probes and i != driver
        try:
            out.append(criterion_cond(qc, types, crit.name, crit.values, rid_col, correlated=correlated))
            if (probes or len(criteria) == 1) and not correlated and selectivity_rank(types, crit) is not None:
                qc.driver = True
        except _Unknown as exc:
            msg = f"Unknown or unsupported search parameter {crit.name!r} for {','.join(types) or 'system'}"
            if not qc.lenient:
                raise Invalid(msg, code="not-supported", expression=crit.name) from exc
            qc.unknown.add(crit.name)
            qc.issues.append(Issue("not-supported", msg + " (ignored)", "warning", [crit.name]))
    return out


def criterion_cond(qc: QueryContext, types: list[str], name: str, values: list[str], rid_col: Any, *,
                   correlated: bool = False) -> ColumnElement[bool]:
    """The condition on ``rid_col`` of one criterion (``correlated``: as ``EXISTS`` probes)."""
    if not values:
        raise Invalid(f"search parameter {name!r} has no value", expression=name)
    if name.startswith("_has:"):
        return _has_cond(qc, types, name, values, rid_col, correlated)
    head, _, chain = name.partition(".")
    code, _, modifier = head.partition(":")
    modifier = modifier or None
    if code == "_id":
        if modifier or chain:
            raise _Unknown(name)
        a = rc.alias()
        av = _probe_view(qc, a, correlated)
        ids = select(a.c.rid).where(av.c.res_type.in_(types), av.c.res_id.in_(values))
        return _member(qc, rid_col, ids, a.c.rid, correlated)
    sp = _same_param(types, code)
    if chain:
        if sp.type != "reference":
            raise _Unknown(name)
        return _chain_cond(qc, types, sp, modifier, chain, values, rid_col, correlated)
    if modifier == "missing":
        if values[0] not in ("true", "false"):
            raise Invalid(f"{name} must be true or false", expression=name)
        table = TABLE_BY_TYPE["token" if sp.type == "composite" else sp.type]
        codes = [f"{code}$0"] if sp.type == "composite" else [code]
        tv = _probe_view(qc, table, correlated)
        has = select(table.c.rid).where(tv.c.res_type.in_(types), tv.c.param.in_(codes))
        present = _member(qc, rid_col, has, table.c.rid, correlated)
        return not_(present) if values[0] == "true" else present
    type_modifier = sp.type == "reference" and bool(modifier) and modifier[:1].isupper()
    if modifier and modifier not in C.MODIFIERS.get(sp.type, set()) and not type_modifier:
        raise Invalid(f"modifier :{modifier} is not supported on {code}", code="not-supported", expression=name)
    if sp.type == "composite":
        subs = [_composite_subquery(qc, types, sp, v, name, correlated) for v in values]
        return or_(*(_member(qc, rid_col, sub, first_rid, correlated) for sub, first_rid in subs))
    # the table itself, not an alias (building an alias's columns is a tenth of a search's
    # Python time): no enclosing query selects from an index table, so nothing correlates
    t = TABLE_BY_TYPE[sp.type]
    tv = _probe_view(qc, t, correlated)
    conds = [_value_cond(qc, sp, tv, v, modifier, name) for v in values]
    param = code + ":of-type" if modifier == "of-type" else code
    sub = select(t.c.rid).where(tv.c.res_type.in_(types) if len(types) > 1 else tv.c.res_type == types[0],
                                tv.c.param == param, or_(*conds))
    if modifier == "not":
        return not_(_member(qc, rid_col, sub, t.c.rid, correlated))
    return _member(qc, rid_col, sub, t.c.rid, correlated)


def _value_cond(qc: QueryContext, sp: SearchParam, t: Any, v: str, modifier: str | None, name: str) -> ColumnElement[bool]:
    if sp.type == "token":
        return C.token_cond(t, v, None if modifier == "not" else modifier, name)
    if sp.type == "string":
        return C.string_cond(t, v, modifier, qc.is_pg)
    if sp.type == "date":
        return C.date_cond(t, v, name)
    if sp.type == "reference":
        return C.reference_cond(t, v, modifier, sp.targets, qc.base_url, name)
    if sp.type == "quantity":
        return C.number_cond(t, v, name, units=True)
    if sp.type == "number":
        return C.number_cond(t, v, name, units=False)
    if sp.type == "uri":
        return C.uri_cond(t, v, modifier, qc.is_pg)
    raise _Unknown(name)


def _composite_subquery(qc: QueryContext, types: list[str], sp: SearchParam, value: str, name: str,
                        correlated: bool = False) -> tuple[Any, Any]:
    """(subquery, its rid column) of one composite value: every component in one group
    (the other components are reached from the first through ``rid``)."""
    comps = REGISTRY.components_for(sp, types[0])
    parts = split_escaped(value, "$")
    if len(parts) != len(comps):
        raise Invalid(f"{name}: expected {len(comps)} components separated by $", expression=name)
    aliases = [TABLE_BY_TYPE[c.type].alias() for c in comps]
    first = aliases[0]
    where: list[Any] = [_probe_view(qc, first, correlated).c.res_type.in_(types)]
    for i, (comp, t, part) in enumerate(zip(comps, aliases, parts, strict=True)):
        fake = SearchParam(code=sp.code, type=comp.type, url="", description="", bases=(), expression="")
        where += [t.c.param == f"{sp.code}${i}", _value_cond(qc, fake, t, part, None, name)]
        if i:
            where += [t.c.rid == first.c.rid, t.c.grp == first.c.grp]
    return select(first.c.rid).where(*where), first.c.rid


def _chain_cond(
    qc: QueryContext, types: list[str], sp: SearchParam, modifier: str | None, chain: str,
    values: list[str], rid_col: Any, correlated: bool = False,
) -> ColumnElement[bool]:
    next_code = chain.split(".", 1)[0].split(":", 1)[0]
    candidates = [modifier] if modifier else list(sp.targets)
    targets = [t for t in candidates if next_code == "_id" or REGISTRY.get(t, next_code) is not None
               or next_code.startswith("_has")]
    if not targets:
        raise _Unknown(f"{sp.code}.{chain}")
    r = search_reference.alias()
    tgt = rc.alias()
    per_type = []
    for ttype in targets:
        inner = criterion_cond(qc, [ttype], chain, values, tgt.c.rid)
        g = gate_cond(qc, [ttype], tgt.c.res_type, tgt.c.rid)
        per_type.append(and_(tgt.c.res_type == ttype, inner, g if g is not None else true()))
    sub = (
        select(r.c.rid)
        .select_from(r.join(tgt, and_(tgt.c.res_type == r.c.target_type, tgt.c.res_id == r.c.target_id)))
        .where(_probe_view(qc, r, correlated).c.res_type.in_(types), r.c.param == sp.code, tgt.c.deleted.is_(False),
               or_(*per_type))
    )
    return _member(qc, rid_col, sub, r.c.rid, correlated)


def _has_cond(qc: QueryContext, types: list[str], name: str, values: list[str], rid_col: Any,
              correlated: bool = False) -> ColumnElement[bool]:
    parts = name.split(":", 3)
    if len(parts) != 4:
        raise Invalid(f"{name}: expected _has:Type:reference:parameter", expression=name)
    _, src_type, ref_code, rest = parts
    ref_sp = REGISTRY.get(src_type, ref_code)
    if ref_sp is None or ref_sp.type != "reference":
        raise _Unknown(name)
    src = rc.alias()
    r = search_reference.alias()
    tgt = rc.alias()
    src_conds = [src.c.res_type == src_type, src.c.deleted.is_(False),
                 criterion_cond(qc, [src_type], rest, values, src.c.rid)]
    sources = select(src.c.rid).where(*_with_gate(qc, [src_type], src.c.res_type, src.c.rid, *src_conds))
    sub = (
        select(tgt.c.rid)
        .select_from(tgt.join(r, and_(r.c.target_type == tgt.c.res_type, r.c.target_id == tgt.c.res_id)))
        .where(_probe_view(qc, tgt, correlated).c.res_type.in_(types), r.c.res_type == src_type, r.c.param == ref_code,
               r.c.rid.in_(sources))
    )
    return _member(qc, rid_col, sub, tgt.c.rid, correlated)


def compartment_cond(types: list[str], compartment: tuple[str, str], rid_col: Any) -> ColumnElement[bool]:
    """Membership of the Patient compartment (compartmentdefinition-patient.html)."""
    ctype, cid = compartment
    if ctype != "Patient":
        raise Invalid(f"compartment {ctype} is not supported", code="not-supported")
    conds: list[Any] = []
    for t in types:
        codes = PATIENT_COMPARTMENT.get(t)
        if codes:
            r = search_reference.alias()
            conds.append(rid_col.in_(select(r.c.rid).where(
                r.c.res_type == t, r.c.param.in_(codes), r.c.target_type == "Patient", r.c.target_id == cid)))
        if t == "Patient":
            conds.append(rid_col.in_(select(rc.c.rid).where(rc.c.res_type == "Patient", rc.c.res_id == cid)))
    return or_(*conds) if conds else false()


_SORT_COLS = {"token": "code", "string": "norm", "reference": "target_id", "quantity": "low",
              "number": "low", "uri": "value"}
_SENTINEL: dict[str, Any] = {"token": "", "string": "", "reference": "", "uri": "",
                             "quantity": -1e300, "number": -1e300, "date": MIN_DT}


def sort_expression(types: list[str], code: str, desc: bool) -> tuple[Any, str]:
    """(SQL expression, kind) of a sort key; kind tells the cursor how to encode values."""
    if code == "_id":
        return rc.c.res_id, "str"
    try:
        sp = _same_param(types, code)
    except _Unknown:
        raise Invalid(f"Unknown or unsupported sort parameter {code[:64]!r} for {','.join(types) or 'system'}",
                      code="not-supported", expression="_sort") from None
    if sp.type == "composite":
        raise Invalid(f"cannot sort on composite parameter {code}", code="not-supported", expression="_sort")
    table = TABLE_BY_TYPE[sp.type]
    if sp.type == "date":
        col = table.c.high if desc else table.c.low
    else:
        col = table.c[_SORT_COLS[sp.type]]
    agg = func.max(col) if desc else func.min(col)
    sub = select(agg).where(table.c.rid == rc.c.rid, table.c.param == code).scalar_subquery()
    sentinel = _SENTINEL[sp.type]
    expr = func.coalesce(sub, literal(sentinel, type_=col.type))
    kind = "date" if sp.type == "date" else ("num" if isinstance(sentinel, float) else "str")
    return expr, kind


def keyset_cond(keys: list[tuple[Any, bool]], position: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``position`` in the order of ``keys`` ((expr, descending) ...)."""
    ors = []
    for i, (expr, desc) in enumerate(keys):
        eqs = [keys[j][0] == position[j] for j in range(i)]
        ors.append(and_(*eqs, expr < position[i] if desc else expr > position[i]))
    return or_(*ors)


def decode_key(kind: str, value: Any) -> Any:
    if kind == "date" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def encode_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return value
