"""``_include`` and ``_revinclude`` (FHIR R4 search.html#include), set-based.

Targets of the matched page's references (``_include``) and resources referring to
them (``_revinclude``) are found with one query per directive over the reference
index, narrowed by the disclosure gate's ``sql_filter`` in SQL; ``:iterate`` repeats
on what was just added. At most ``settings.max_include`` resources are added; beyond
that the result is cut and a ``too-costly`` warning is reported.
"""

from __future__ import annotations

from sqlalchemy import and_, select

from exchange.db.tables import resource_current as rc
from exchange.outcome import Invalid, Issue
from exchange.search.params import Include
from exchange.search.query import QueryContext, gate_cond
from exchange.search.registry import REGISTRY, SERVED_TYPES
from exchange.search.tables import search_reference as sr

_CHUNK = 500


def _targets_of(include: Include) -> list[str]:
    if include.target:
        return [include.target]
    if include.param == "*":
        return list(SERVED_TYPES)
    sp = REGISTRY.get(include.source, include.param)
    if sp is None or sp.type != "reference":
        raise Invalid(f"{include.raw[0]}={include.raw[1]}: unknown reference parameter", expression=include.raw[0])
    return list(sp.targets) or list(SERVED_TYPES)


def _forward(qc: QueryContext, inc: Include, rids: list[int]) -> list[int]:
    targets = _targets_of(inc)
    tgt = rc.alias()
    out: list[int] = []
    for i in range(0, len(rids), _CHUNK):
        conds = [sr.c.rid.in_(rids[i : i + _CHUNK]), tgt.c.deleted.is_(False), tgt.c.res_type.in_(targets)]
        if inc.source != "*":
            conds.append(sr.c.res_type == inc.source)
        if inc.param != "*":
            conds.append(sr.c.param == inc.param)
        g = gate_cond(qc, targets, tgt.c.res_type, tgt.c.rid)
        if g is not None:
            conds.append(g)
        q = (
            select(tgt.c.rid)
            .select_from(sr.join(tgt, and_(tgt.c.res_type == sr.c.target_type, tgt.c.res_id == sr.c.target_id)))
            .where(*conds)
            .distinct()
        )
        out.extend(r for (r,) in qc.conn.execute(q))
    return out


def _reverse(qc: QueryContext, inc: Include, rids: list[int]) -> list[int]:
    if inc.param == "*" or inc.source == "*":
        sources = list(SERVED_TYPES) if inc.source == "*" else [inc.source]
    else:
        sp = REGISTRY.get(inc.source, inc.param)
        if sp is None or sp.type != "reference":
            raise Invalid(f"{inc.raw[0]}={inc.raw[1]}: unknown reference parameter", expression=inc.raw[0])
        sources = [inc.source]
    matched = rc.alias()
    src = rc.alias()
    out: list[int] = []
    for i in range(0, len(rids), _CHUNK):
        conds = [matched.c.rid.in_(rids[i : i + _CHUNK]), src.c.deleted.is_(False), sr.c.res_type.in_(sources)]
        if inc.param != "*":
            conds.append(sr.c.param == inc.param)
        if inc.target:
            conds.append(matched.c.res_type == inc.target)
        g = gate_cond(qc, sources, src.c.res_type, src.c.rid)
        if g is not None:
            conds.append(g)
        q = (
            select(src.c.rid)
            .select_from(
                sr.join(matched, and_(matched.c.res_type == sr.c.target_type, matched.c.res_id == sr.c.target_id))
                .join(src, src.c.rid == sr.c.rid)
            )
            .where(*conds)
            .distinct()
        )
        out.extend(r for (r,) in qc.conn.execute(q))
    return out


def resolve_includes(qc: QueryContext, includes: list[Include], match_rids: list[int], cap: int) -> list[int]:
    """rids to add with search.mode ``include``, in a stable order, at most ``cap``."""
    if not includes or not match_rids:
        return []
    seen = set(match_rids)
    added: list[int] = []
    frontier = list(match_rids)
    first = True
    truncated = False
    while frontier:
        new: list[int] = []
        for inc in includes:
            if not first and not inc.iterate:
                continue
            got = _reverse(qc, inc, frontier) if inc.reverse else _forward(qc, inc, frontier)
            for r in sorted(got):
                if r not in seen:
                    seen.add(r)
                    new.append(r)
        if len(added) + len(new) > cap:
            new = new[: cap - len(added)]
            truncated = True
        added.extend(new)
        if truncated or not any(i.iterate for i in includes):
            break
        frontier = new
        first = False
    if truncated:
        qc.issues.append(Issue(
            "too-costly",
            f"More than {cap} resources would be included; the included set was cut at {cap}",
            "warning",
            ["_include"],
        ))
    return added
