"""The one choke point every outgoing resource passes through (design.md, "the one idea").

Handlers never call consent or audit themselves. Anything a response will carry --
reads, vreads, history entries, search matches and includes, ``$everything``, batch
entries, operation outputs -- goes through :func:`release`, which asks the request's
:class:`DisclosureGate` about each resource and records in the
:class:`~exchange.pipeline.context.RequestContext` what was released and what was
withheld (and by which rule) for the audit log.

The gate has two faces (after HAPI's consent interceptor and Medplum's SQL filters):

* :meth:`DisclosureGate.sql_filter` narrows a search *in SQL, before LIMIT*, so that
  pages stay full, totals count only visible resources and paging links stay correct;
* :meth:`DisclosureGate.check` is the per-resource backstop applied to everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from exchange.pipeline.context import Released, RequestContext
from exchange.repository.patients import patient_id_of
from exchange.repository.stored import StoredResource

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Connection

Effect = Literal["permit", "deny", "redact"]


@dataclass(frozen=True)
class Decision:
    effect: Effect
    rule: str | None = None  # id of the rule or directive that decided
    reason: str | None = None
    replacement: bytes | None = None  # for "redact": the bytes to send instead
    notice: str | None = None  # an informational note for the client (no hidden detail)
    #: True when the refusal itself may be disclosed (a read answers 403 Forbidden, e.g.
    #: "no care relationship"); False hides the resource's existence (a read answers 404)
    disclose_refusal: bool = False


PERMIT = Decision("permit")


class DisclosureGate(Protocol):
    #: True when ``sql_filter`` does not depend on the resource type, so a query over many
    #: types (system search, ``$everything``) may apply one condition instead of one per type
    type_independent: bool

    def sql_filter(
        self, conn: Connection, ctx: RequestContext, resource_type: str, rid_column: Any
    ) -> ColumnElement[bool] | None:
        """A SQL condition on ``rid_column`` that keeps only resources this requester may
        possibly see (None = no narrowing). Must never admit what ``check`` would deny
        for a reason it could have expressed in SQL."""

    def check(self, conn: Connection, ctx: RequestContext, resource: StoredResource) -> Decision:
        """The decision for one resource about to leave."""

    # Optional: ``narrowing_rules(ctx) -> Iterable[str]``, the ids of the rules whose SQL
    # narrowing was in force for this request (e.g. ``relationship.none``,
    # ``label.legally-restricted``, ``consent.directive:Patient/p1``). A gate that wraps
    # another exposes it as ``inner``; :func:`narrowing_rules` asks each in turn. The
    # access log records them (SQL narrowing removes rows before LIMIT, so there is no
    # per-resource count for it; docs/ig-guide.md).


class PermitAll:
    """The gate used when consent is switched off (development, benchmark baseline)."""

    type_independent = True

    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return None

    def check(self, conn, ctx, resource):  # noqa: ANN001
        return PERMIT


def gate_of(ctx: RequestContext) -> DisclosureGate:
    """The request's gate (a batch entry uses its batch's)."""
    root = ctx
    while root.parent is not None and root.gate is None:
        root = root.parent
    return root.gate or PermitAll()


def _lineage(ctx: RequestContext | None) -> Iterator[RequestContext]:
    """``ctx`` and its parents (a batch entry's facts belong to the batch's record too)."""
    while ctx is not None:
        yield ctx
        ctx = ctx.parent


def narrow(conn: Connection, ctx: RequestContext, resource_type: str | None,
           rid_column: Any) -> ColumnElement[bool] | None:
    """The request's gate's ``sql_filter``, noted in ``ctx`` (and its batch) for the access
    log when it narrows anything: the types narrowed and the rules in force. Every query
    that selects resources to release applies its narrowing through here."""
    cond = gate_of(ctx).sql_filter(conn, ctx, resource_type, rid_column)
    if cond is not None:
        rules = narrowing_rules(gate_of(ctx), ctx)
        for c in _lineage(ctx):
            c.narrowed_types.add(resource_type or "*")
            c.narrowing_rules.update(rules)
    return cond


def narrowing_rules(gate: Any, ctx: RequestContext) -> set[str]:
    """The narrowing rules ``gate`` (and any gate it wraps, ``inner``) reports in force."""
    found: set[str] = set()
    seen = 0
    while gate is not None and seen < 8:
        report = getattr(type(gate), "narrowing_rules", None)
        if report is not None:
            found.update(report(gate, ctx) or ())
        gate = getattr(gate, "inner", None)
        seen += 1
    return found


def release(
    conn: Connection, ctx: RequestContext, resources: Iterable[StoredResource]
) -> list[StoredResource]:
    """Return the resources that may leave, in order, redacted where the gate says so.

    Records every released resource and every withheld one (with its rule) in ``ctx``.
    Deleted versions (history entries) carry no content; the gate decides them from what it
    kept about the resource, so a delete marker cannot reveal a hidden resource either.
    """
    gate = gate_of(ctx)
    out: list[StoredResource] = []
    for res in resources:
        shown, _ = _apply(conn, ctx, gate, res)
        if shown is not None:
            out.append(shown)
    return out


def release_one(conn: Connection, ctx: RequestContext, resource: StoredResource) -> StoredResource | None:
    return _apply(conn, ctx, gate_of(ctx), resource)[0]


def release_or_refuse(conn: Connection, ctx: RequestContext, resource: StoredResource,
                      not_found: str | None = None) -> StoredResource:
    """Release one resource or raise: 403 when the gate discloses its refusal, else 404
    (a withheld resource is then indistinguishable from one that does not exist)."""
    from exchange.outcome import Forbidden, NotFound

    shown, decision = _apply(conn, ctx, gate_of(ctx), resource)
    if shown is not None:
        return shown
    if decision.disclose_refusal:
        raise Forbidden(decision.reason or "Access to this record is not permitted")
    raise NotFound(not_found or f"Resource {resource.resource_type}/{resource.id} is not known")


def _apply(
    conn: Connection, ctx: RequestContext, gate: DisclosureGate, res: StoredResource
) -> tuple[StoredResource | None, Decision]:
    decision = gate.check(conn, ctx, res)
    if decision.notice and decision.notice not in ctx.informational:
        ctx.informational.append(decision.notice)
    if decision.effect == "deny":
        ctx.withheld += 1
        ctx.withheld_rules[decision.rule or "unspecified"] += 1
        pid = _patient_of(res)
        if pid:  # for the access log only ("each patient concerned"); never in a response
            for c in _lineage(ctx):
                c.withheld_patients.add(pid)
        return None, decision
    if decision.effect == "redact" and decision.replacement is not None:
        ctx.redacted += 1
        res = StoredResource(
            rid=res.rid,
            resource_type=res.resource_type,
            id=res.id,
            version_id=res.version_id,
            last_updated=res.last_updated,
            deleted=res.deleted,
            content=decision.replacement,
            method=res.method,
        )
    ctx.released.append(Released(res.resource_type, res.id, str(res.version_id)))
    pid = _patient_of(res)
    if pid:
        ctx.patients.add(pid)
    return res, decision


def _patient_of(res: StoredResource) -> str | None:
    """The patient a resource is about (itself for a Patient; None for a delete marker,
    which carries no content)."""
    if res.resource_type == "Patient":
        return res.id
    if res.deleted or res.content is None:
        return None
    return patient_id_of(res.data)
