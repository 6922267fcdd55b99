"""SQL narrowing before LIMIT for the consent gate (design.md: security filters go into
the SQL builder, before LIMIT, not after paging).

:func:`hidden_condition` is a condition on ``consent_fact`` rows (consent/tables.py) that
``ConsentGate.check`` certainly denies: other patients' records and not-for-patient
items (patient tokens); out-of-scope types and legally restricted items (system
clients); no care relationship, legally restricted items from other organisations,
audit records and out-of-scope types for limited roles (clinicians). Resources of
patients with directives are evaluated exactly per request (:func:`directive_inputs`)
so that ``_has``, chains, includes and totals never see what the directives withhold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, Connection, and_, false, not_, or_, select

from consent.directives import combine, is_uniform, restrictions_for
from consent.relationship import org_refs_for, relationship_cutoff, unrelated
from consent.tables import consent_fact
from exchange.pipeline.context import RequestContext

if TYPE_CHECKING:
    from consent.gate import ConsentGate

AUDIT_TYPES = frozenset({"AuditEvent"})
DIRECTIVE_EVAL_LIMIT = 5000


def hidden_condition(gate: ConsentGate, conn: Connection, ctx: RequestContext) -> ColumnElement[bool] | None:
    """Condition on ``consent_fact`` rows that ``check`` certainly denies.

    The inputs that depend on the requester and the record (organisation references,
    the look-back cut-off, the directives' outcome) are gathered here, per request; the
    SQL expression built from them is reused across requests with the same inputs
    (:meth:`ConsentGate.built_condition`): building it cost more than running the query.
    """
    inputs = _inputs(gate, conn, ctx)
    return gate.built_condition(inputs, lambda: _build(gate, inputs))


def _inputs(gate: ConsentGate, conn: Connection, ctx: RequestContext) -> tuple:
    """Everything the hidden-rows condition depends on, as a hashable key."""
    req = ctx.requester
    pol = gate.policy
    if req.kind == "patient":
        return ("patient", req.patient_id or "")
    if req.kind == "system":
        sp = pol.system_policy(req.client_id)
        if sp is None or sp.access == "none":
            return ("nothing",)
        return ("system", req.client_id, directive_inputs(gate, conn, ctx))
    group = pol.group_for_role(req.role)
    purpose = req.purpose_of_use or "TREAT"
    btg = purpose == "BTG"
    if (group is None or purpose not in group.purposes
            or (btg and pol.break_glass_requires_reason
                and not (req.break_glass_reason or "").strip())):
        return ("nothing",)
    relationship: tuple | None = None
    if pol.relationship_required and not (btg and "relationship" in pol.break_glass_overrides):
        st = gate._state(ctx)
        ods = req.organization
        if st.org_refs is None:
            st.org_refs = org_refs_for(conn, ods) if ods else []
        relationship = (ods, tuple(st.org_refs), relationship_cutoff(st.now, gate.settings.relationship_lookback_days))
    return ("user", group.name, req.organization or "", directive_inputs(gate, conn, ctx), relationship)


def _build(gate: ConsentGate, inputs: tuple) -> ColumnElement[bool] | None:
    """The hidden-rows condition for :func:`_inputs`' key (no database access)."""
    pol = gate.policy
    f = consent_fact
    about_patient = f.c.patient_id.is_not(None)
    reference = f.c.res_type.in_(sorted(pol.non_patient_types))
    if inputs[0] == "nothing":
        return hide_all_but(reference)
    if inputs[0] == "patient":
        return or_(
            and_(f.c.patient_id.is_(None), f.c.res_type.not_in(sorted(pol.non_patient_types)),
                 f.c.res_type != "Provenance"),
            and_(about_patient, f.c.patient_id != inputs[1]),
            f.c.not_for_patient.is_(True),
        )
    directive_patients = select(f.c.patient_id).where(  # an index range, see consent/gate.py
        f.c.directive.is_(True), f.c.patient_id > "").scalar_subquery()
    restricted = and_(f.c.restricted.is_(True), about_patient,
                      f.c.patient_id.not_in(directive_patients))
    if inputs[0] == "system":
        _kind, client_id, directives = inputs
        sp = pol.system_policy(client_id)
        assert sp is not None
        conds = [] if sp.legally_restricted else [restricted]
        if sp.access != "full":
            conds.append(f.c.res_type.in_(sorted(AUDIT_TYPES)))
        conds.append(directive_condition(gate, directives))
        if sp.access == "types":
            conds.append(f.c.res_type.not_in(sorted(sp.resource_types | pol.non_patient_types)))
        return or_(*conds) if conds else None
    _kind, group_name, organization, directives, relationship = inputs
    group = next(g for g in pol.role_groups if g.name == group_name)
    conds = [and_(restricted, or_(f.c.author_org.is_(None), f.c.author_org != organization)),
             f.c.res_type.in_(sorted(AUDIT_TYPES)),
             directive_condition(gate, directives)]
    if group.access == "limited":
        allowed = group.resource_types | pol.demographic_types | pol.non_patient_types
        conds.append(and_(about_patient, f.c.res_type.not_in(sorted(allowed)),
                          f.c.care_pref.is_(False), f.c.patient_id.not_in(directive_patients)))
    if relationship is not None:
        ods, org_refs, cutoff = relationship
        conds.append(and_(about_patient, unrelated(ods, list(org_refs), cutoff, pol.relationship_links,
                                                   f.c.patient_id)))
    return or_(*conds)


def directive_inputs(gate: ConsentGate, conn: Connection, ctx: RequestContext) -> tuple | None:
    """What the patients' directives withhold from this requester, as a hashable key:
    (patients hidden wholesale, rids hidden one by one), or None when directives do not
    bind this requester (break-glass that overrides objections; system clients that do
    not honour them).

    Per patient with in-force directives: none apply to the requester -> nothing; the
    directives decide uniformly (no applying provision tests the resource) and deny ->
    every resource except demographics and care preferences, in SQL; otherwise each of
    the patient's resources is checked (directives can test codes, dates, instances) and
    the denied rids are excluded, so ``_has``, chains and totals never see them. Above
    DIRECTIVE_EVAL_LIMIT such resources, all non-exempt resources of those patients are
    hidden in SQL (conservative) and ``check`` still decides what is shown.
    """
    st = gate._state(ctx)
    f = consent_fact
    req = ctx.requester
    if req.kind == "user" and req.purpose_of_use == "BTG" and \
            "objection" in gate.policy.break_glass_overrides:
        return None
    if req.kind == "system":
        sp = gate.policy.system_policy(req.client_id)
        if sp is None or not sp.honour_objections:
            return None
    if st.directive_hidden is None:
        uniform: list[str] = []
        evaluate: list[str] = []
        for pid, ds in sorted(gate.all_directives(conn, ctx).items()):
            if not any(restrictions_for(d, st.who, st.now) for d in ds):
                continue
            if all(is_uniform(d, st.who, st.now) for d in ds):
                got = combine([o for d in ds if (o := d.evaluate(st.who, {}, st.now))])
                if got is not None and got.effect == "deny":
                    uniform.append(pid)
            else:
                evaluate.append(pid)
        st.directive_uniform = uniform
        rids = list(conn.execute(select(f.c.rid).where(f.c.patient_id.in_(evaluate))
                                 .order_by(f.c.rid).limit(DIRECTIVE_EVAL_LIMIT + 1)).scalars()) \
            if evaluate else []
        st.directive_overflow = evaluate if len(rids) > DIRECTIVE_EVAL_LIMIT else []
        hidden: list[int] = []
        if rids and not st.directive_overflow:
            from exchange.repository.store import read_many_current

            scratch = RequestContext(requester=ctx.requester)
            scratch._consent = st  # share caches, not the audit attributes of ctx
            hidden = [r.rid for r in read_many_current(conn, rids)
                      if gate.decide(conn, scratch, r.data).effect == "deny"]
        st.directive_hidden = hidden
    return (tuple(st.directive_uniform + list(st.directive_overflow)), tuple(st.directive_hidden))


def directive_condition(gate: ConsentGate, inputs: tuple | None) -> ColumnElement[bool]:
    """The rows :func:`directive_inputs` found withheld by directives."""
    if inputs is None:
        return false()
    blanket, hidden = inputs
    f = consent_fact
    conds: list[ColumnElement[bool]] = []
    if blanket:
        conds.append(and_(f.c.patient_id.in_(list(blanket)), f.c.care_pref.is_(False),
                          f.c.res_type.not_in(sorted(gate.policy.demographic_types))))
    if hidden:
        conds.append(f.c.rid.in_(list(hidden)))
    return or_(*conds) if conds else false()


_PATIENT_PARAMS = {"patient", "subject", "patient:Patient", "subject:Patient", "beneficiary"}


def named_patients(ctx: RequestContext) -> set[str]:
    """Patients a request is explicitly about: compartment / instance / operation target
    and ``patient=`` / ``subject=`` search parameters (``_id`` on Patient searches)."""
    found = set(ctx.patients)
    if ctx.resource_type == "Patient" and ctx.resource_id:
        found.add(ctx.resource_id)
    for key, value in parse_qsl(ctx.query or "", keep_blank_values=False):
        if key in _PATIENT_PARAMS or (key == "_id" and ctx.resource_type == "Patient"):
            for v in value.split(","):
                v = v.strip()
                if v.startswith("Patient/") or "/" not in v:
                    found.add(v.removeprefix("Patient/"))
    found.discard("")
    return found


def hide_all_but(keep: ColumnElement[bool]) -> ColumnElement[bool]:
    """Hide every row except those matching ``keep``."""
    return not_(keep)

