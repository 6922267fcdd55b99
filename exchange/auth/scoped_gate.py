"""The token's scopes on every path out, not only on the URL's resource type.

``router.authorize`` checks the interaction on the type the URL names (SMART App Launch
2, "Scopes": ``<context>/<type>.<permissions>``). Resources of *other* types also leave:
``_include`` / ``_revinclude`` targets, ``Patient/$everything`` members,
``$care-preferences`` inputs, history entries, system searches. :class:`ScopedGate` wraps
the request's disclosure gate (exchange/pipeline/disclosure.py) so that every one of
them is held to the token too:

* the resource's type must be readable under a granted scope (``r`` or ``s``);
* a v2 granular scope (``user/Observation.rs?category=laboratory``) is met: the resource
  matches the scope's search parameters (SMART App Launch 2, "Finer-grained resource
  constraints using search parameters");
* a ``patient/``-confined token sees only its patient's compartment (non-patient
  reference data aside).

Each rule is applied twice, like consent: in SQL before LIMIT (:meth:`sql_filter`, so
totals, pages and ``_has`` never count what the token may not see) and per resource
(:meth:`check`, the backstop). A token whose scopes cover every type without constraints
gets the inner gate unchanged (:func:`scoped_gate`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, or_, select, true

from exchange.auth.scopes import _usable, check_access, granular_filters, patient_restriction
from exchange.db.tables import resource_current as rc
from exchange.outcome import Forbidden
from exchange.pipeline.context import RequestContext, Requester
from exchange.pipeline.disclosure import Decision, DisclosureGate, PermitAll
from exchange.repository.patients import patient_refs
from exchange.repository.stored import StoredResource


@lru_cache(maxsize=1)
def _patient_compartment_types() -> frozenset[str]:
    from exchange.search.registry import PATIENT_COMPARTMENT

    return frozenset(PATIENT_COMPARTMENT) | {"Patient"}


def _unrestricted(requester: Requester) -> bool:
    """Every type readable, no granular constraint, not confined to one patient."""
    if requester.kind == "anonymous":
        return True
    if patient_restriction(requester) is not None:
        return False
    scopes = _usable(requester)
    if any(s.query for s in scopes):
        return False
    return any(s.covers("*") and ({"r", "s"} & set(s.permissions)) for s in scopes)


def scoped_gate(inner: DisclosureGate | None, requester: Requester) -> DisclosureGate | None:
    """``inner`` limited to what ``requester``'s scopes allow (``inner`` itself if nothing is limited)."""
    if _unrestricted(requester):
        return inner
    return ScopedGate(inner or PermitAll(), requester)


class ScopedGate:
    """A :class:`~exchange.pipeline.disclosure.DisclosureGate` held to the token's scopes."""

    type_independent = False  # the scope rules depend on the resource type

    def __init__(self, inner: DisclosureGate, requester: Requester) -> None:
        self.inner = inner
        self.requester = requester
        self.patient = patient_restriction(requester)
        self._readable: dict[str, bool] = {}
        self._constraints: dict[str, list[tuple[str, str]]] = {}
        self._matches: dict[str, Any] = {}  # per type: the rids meeting its constraints (a subquery)

    # -- the rules --------------------------------------------------------------------
    def readable(self, resource_type: str) -> bool:
        if resource_type not in self._readable:
            ok = False
            for interaction in ("read", "search-type"):
                try:
                    check_access(self.requester, interaction, resource_type)
                    ok = True
                    break
                except Forbidden:
                    continue
            self._readable[resource_type] = ok
        return self._readable[resource_type]

    def constraints(self, resource_type: str) -> list[tuple[str, str]]:
        if resource_type not in self._constraints:
            self._constraints[resource_type] = list(granular_filters(self.requester, resource_type) or [])
        return self._constraints[resource_type]

    @staticmethod
    def _compartment_types() -> frozenset[str]:
        return _patient_compartment_types()

    # -- SQL narrowing ----------------------------------------------------------------
    def sql_filter(self, conn: Connection, ctx: RequestContext, resource_type: str | None,
                   rid_column: Any) -> ColumnElement[bool] | None:
        inner = self.inner.sql_filter(conn, ctx, resource_type, rid_column)
        mine = (self._type_condition(conn, ctx, resource_type, rid_column) if resource_type
                else self._any_type_condition(conn, ctx, rid_column))
        parts = [c for c in (mine, inner) if c is not None]
        return and_(*parts) if len(parts) > 1 else (parts[0] if parts else None)

    def _type_condition(self, conn: Connection, ctx: RequestContext, resource_type: str,
                        rid_column: Any) -> ColumnElement[bool] | None:
        if not self.readable(resource_type):
            return false()
        conds: list[ColumnElement[bool]] = []
        extra = self.constraints(resource_type)
        if extra:
            conds.append(rid_column.in_(self._matching(conn, ctx, resource_type, extra)))
        if self.patient is not None and resource_type in self._compartment_types():
            from exchange.search.query import compartment_cond

            conds.append(compartment_cond([resource_type], ("Patient", self.patient), rid_column)
                         if self.patient else false())
        return and_(*conds) if conds else None

    def _any_type_condition(self, conn: Connection, ctx: RequestContext, rid_column: Any) -> ColumnElement[bool]:
        """For a query over every type (system history): the row's type, looked up."""
        rtype = select(rc.c.res_type).where(rc.c.rid == rid_column).scalar_subquery()
        from exchange.validation import SERVED

        ors: list[ColumnElement[bool]] = []
        plain = [t for t in sorted(SERVED) if self.readable(t)
                 and not self.constraints(t) and not (self.patient is not None and t in self._compartment_types())]
        if plain:
            ors.append(rtype.in_(plain))
        for t in sorted(SERVED):
            if t in plain or not self.readable(t):
                continue
            cond = self._type_condition(conn, ctx, t, rid_column)
            ors.append(and_(rtype == t, cond if cond is not None else true()))
        return or_(*ors) if ors else false()

    def _matching(self, conn: Connection, ctx: RequestContext, resource_type: str,
                  params: list[tuple[str, str]]) -> Any:
        """The rids of current ``resource_type`` resources matching ``params`` (a subquery,
        built once per type for the request: it does not depend on the outer query)."""
        if resource_type in self._matches:
            return self._matches[resource_type]
        from exchange.search.params import parse_request
        from exchange.search.query import QueryContext
        from exchange.search.service import _base_conditions

        plain = RequestContext(requester=self.requester)
        plain.gate = PermitAll()  # the scope's own parameters only; the caller adds the rest
        qc = QueryContext(conn, plain, "", lenient=False)
        sub = select(rc.c.rid).where(*_base_conditions(qc, [resource_type], parse_request(params), None))
        self._matches[resource_type] = sub
        return sub

    def narrowing_rules(self, ctx: RequestContext) -> set[str]:
        """The scope rules in force (the access log; the inner gate reports its own)."""
        rules = {"scope.type"}
        if self.patient is not None:
            rules.add("scope.patient")
        if any(self._constraints.values()):
            rules.add("scope.granular")
        return rules

    # -- per resource ---------------------------------------------------------------
    def check(self, conn: Connection, ctx: RequestContext, resource: StoredResource) -> Decision:
        rtype = resource.resource_type
        if not self.readable(rtype):
            return Decision("deny", "scope.type", f"The granted scopes do not allow reading {rtype}",
                            disclose_refusal=True)
        if self.patient is not None and rtype in self._compartment_types():
            about = patient_refs(resource.data) if resource.content is not None else []
            if resource.content is None or not self.patient or not about or any(p != self.patient for p in about):
                return Decision("deny", "scope.patient", "This token is limited to a single patient's record")
        extra = self.constraints(rtype)
        if extra:
            from exchange.search.service import find_rids

            plain = RequestContext(requester=self.requester)
            plain.gate = PermitAll()
            if resource.content is None or resource.rid not in set(
                    find_rids(conn, plain, rtype, [("_id", resource.id), *extra])):
                return Decision("deny", "scope.granular", "The token's scope does not cover this resource",
                                disclose_refusal=True)
        return self.inner.check(conn, ctx, resource)
