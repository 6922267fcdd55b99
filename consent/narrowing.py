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

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, and_, exists, false, not_, or_, select, true

from consent.directives import combine, is_uniform, restrictions_for, widens_for
from consent.relationship import org_refs_for, relationship_cutoff, unrelated
from consent.tables import consent_fact
from exchange.db.tables import resource_current
from exchange.pipeline.context import RequestContext
from exchange.search.tables import search_reference

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
    gate._state(ctx).inputs = inputs  # for the access log (narrowing_rules)
    return gate.built_condition(_shape(inputs), inputs, lambda: _build(gate, inputs))


def _shape(inputs: tuple) -> tuple:
    """``inputs`` without what moves with time and data (the look-back cut-off, every
    minute; the directives' outcome, with the record): one cache slot per requester
    shape, replaced when those move, rather than a new entry each time (the server's
    memory grew by one expression a minute per requester before)."""
    if inputs[0] == "user":
        rel = inputs[4]
        return (inputs[0], inputs[1], inputs[2], None if rel is None else rel[:2])
    if inputs[0] == "system":
        return inputs[:2]
    return inputs


def rules_in_force(gate: ConsentGate, ctx: RequestContext, inputs: tuple) -> set[str]:
    """The ids of the rules the hidden-rows condition for ``inputs`` applies (for the
    access log: SQL narrowing removes rows before LIMIT, so it has no per-resource count)."""
    pol, req = gate.policy, ctx.requester
    kind = inputs[0]
    if kind == "nothing":
        group = pol.group_for_role(req.role)
        if req.kind == "system":
            return {f"policy.system-client.{req.client_id}"}
        if group is None:
            return {"policy.no-role"}
        return {"policy.purpose"} if (req.purpose_of_use or "TREAT") not in group.purposes else {"break-glass.no-reason"}
    rules = {"provenance.target-hidden"}
    if kind == "patient":
        return rules | {"patient.other-record", "label.not-for-patient"}
    directives = inputs[2] if kind == "system" else inputs[3]
    if directives is not None:
        blanket, hidden, _evaluated = directives
        rules |= {f"consent.directive:Patient/{pid}" for pid in blanket}
        if hidden:
            rules.add("consent.directive")
    if kind == "system":
        sp = pol.system_policy(inputs[1])
        if sp is not None and not sp.legally_restricted:
            rules.add("label.legally-restricted")
        if sp is not None and sp.access != "full":
            rules.add("policy.audit-restricted")
        if sp is not None and sp.access == "types":
            rules.add(f"policy.system-client.{inputs[1]}")
        return rules
    rules |= {"label.legally-restricted", "policy.audit-restricted"}
    group = next((g for g in pol.role_groups if g.name == inputs[1]), None)
    if group is not None and group.access == "limited":
        rules.add("policy.role-scope")
    if inputs[4] is not None:
        rules.add("relationship.none")
    return rules


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
    """The hidden-rows condition for :func:`_inputs`' key (no database access): the
    rows :func:`_facts_hidden` hides, and every Provenance one of whose targets is hidden,
    missing or deleted (``ConsentGate._provenance``: a Provenance is visible only when
    every target is), so that no count, page or ``_has`` reveals a hidden target's
    provenance."""
    f = consent_fact
    own = _facts_hidden(gate, inputs, f)
    if inputs[0] == "nothing":
        return own
    targets = consent_fact.alias("prov_target_fact")
    prov = _provenance_hidden(f, targets, _facts_hidden(gate, inputs, targets))
    return or_(own, prov) if own is not None else prov


def _provenance_hidden(f: Any, tf: Any, target_hidden: ColumnElement[bool] | None) -> ColumnElement[bool]:
    sr = search_reference.alias("prov_target_ref")
    trc = resource_current.alias("prov_target_rc")
    bad = or_(trc.c.rid.is_(None), trc.c.deleted.is_(True), tf.c.rid.is_(None))
    if target_hidden is not None:
        bad = or_(bad, target_hidden)
    names_target = and_(sr.c.rid == f.c.rid, sr.c.res_type == "Provenance", sr.c.param == "target")
    one_hidden = exists(select(sr.c.rid).select_from(
        sr.outerjoin(trc, and_(trc.c.res_type == sr.c.target_type, trc.c.res_id == sr.c.target_id))
        .outerjoin(tf, tf.c.rid == trc.c.rid)).where(names_target, bad))
    no_target = ~exists(select(sr.c.rid).where(names_target))
    return and_(f.c.res_type == "Provenance", or_(one_hidden, no_target))


def _facts_hidden(gate: ConsentGate, inputs: tuple, f: Any) -> ColumnElement[bool] | None:
    """Rows of ``f`` (``consent_fact`` or an alias) that ``check`` certainly denies."""
    pol = gate.policy
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
    directives = inputs[2] if inputs[0] == "system" else inputs[3]
    # Patients whose directives are decided resource by resource (directive_inputs) are
    # exempt from the policy rules an explicit permit can lift; their hidden rows are
    # listed exactly. Without directive inputs (objections overridden), every patient
    # with a directive is exempt, as check may still find an explicit permit.
    if directives is not None:
        evaluated = list(directives[2])
        not_exempt: ColumnElement[bool] = f.c.patient_id.not_in(evaluated) if evaluated else true()
    else:
        not_exempt = f.c.patient_id.not_in(select(consent_fact.c.patient_id).where(  # an index range
            consent_fact.c.directive.is_(True), consent_fact.c.patient_id > "").scalar_subquery())
    restricted = and_(f.c.restricted.is_(True), about_patient, not_exempt)
    if inputs[0] == "system":
        _kind, client_id, _directives = inputs
        sp = pol.system_policy(client_id)
        assert sp is not None
        conds = [] if sp.legally_restricted else [restricted]
        if sp.access != "full":
            conds.append(f.c.res_type.in_(sorted(AUDIT_TYPES)))
        conds.append(directive_condition(gate, directives, f))
        if sp.access == "types":
            conds.append(f.c.res_type.not_in(sorted(sp.resource_types | pol.non_patient_types)))
        return or_(*conds) if conds else None
    _kind, group_name, organization, _directives, relationship = inputs
    group = next(g for g in pol.role_groups if g.name == group_name)
    conds = [and_(restricted, or_(f.c.author_org.is_(None), f.c.author_org != organization)),
             f.c.res_type.in_(sorted(AUDIT_TYPES)),
             directive_condition(gate, directives, f)]
    if group.access == "limited":
        allowed = group.resource_types | pol.demographic_types | pol.non_patient_types
        conds.append(and_(about_patient, f.c.res_type.not_in(sorted(allowed)),
                          f.c.care_pref.is_(False), not_exempt))
    if relationship is not None:
        ods, org_refs, cutoff = relationship
        conds.append(and_(about_patient, unrelated(ods, list(org_refs), cutoff, pol.relationship_links,
                                                   f.c.patient_id)))
    return or_(*conds)


def directive_inputs(gate: ConsentGate, conn: Connection, ctx: RequestContext) -> tuple | None:
    """What the patients' directives mean for this requester, as a hashable key:
    (patients hidden wholesale, rids hidden one by one, patients decided one resource at
    a time -- who are therefore exempt from the policy rules an explicit permit lifts).

    A patient whose directive explicitly permits this requester something is always
    decided one resource at a time: the permit may unlock a legally restricted item or a
    limited role's out-of-scope type, which the policy's SQL would otherwise hide.

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
    # Objections overridden (break-glass that overrides them; a system client that does
    # not honour them): directives withhold nothing, but an explicit permit still lifts
    # policy rules, so the patients with one are still decided one resource at a time.
    overridden = (req.kind == "user" and req.purpose_of_use == "BTG"
                  and "objection" in gate.policy.break_glass_overrides)
    if req.kind == "system":
        sp = gate.policy.system_policy(req.client_id)
        overridden = sp is None or not sp.honour_objections
    if st.directive_hidden is None:
        uniform: list[str] = []
        evaluate: list[str] = []
        widened: list[str] = []  # an explicit permit may unlock what the policy's SQL would hide
        for pid, ds in sorted(gate.all_directives(conn, ctx).items()):
            if any(widens_for(d, st.who, st.now) for d in ds):
                evaluate.append(pid)
                widened.append(pid)
                continue
            if overridden or not any(restrictions_for(d, st.who, st.now) for d in ds):
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
        # Too many to decide one by one: hide the restricting patients' non-exempt rows
        # wholesale (conservative), and leave the widened ones to the per-resource check
        # (exempt from the rules their permit may lift, never hidden wholesale).
        st.directive_overflow = [p for p in evaluate if p not in widened] if len(rids) > DIRECTIVE_EVAL_LIMIT else []
        hidden: list[int] = []
        if rids and len(rids) <= DIRECTIVE_EVAL_LIMIT:
            from exchange.repository.store import read_many_current

            scratch = RequestContext(requester=ctx.requester)
            scratch._consent = st  # share caches, not the audit attributes of ctx
            hidden = [r.rid for r in read_many_current(conn, rids)
                      if gate.decide(conn, scratch, r.data).effect == "deny"]
        st.directive_hidden = hidden
        st.directive_evaluated = widened if len(rids) > DIRECTIVE_EVAL_LIMIT else evaluate
    return (tuple(st.directive_uniform + list(st.directive_overflow)), tuple(st.directive_hidden),
            tuple(st.directive_evaluated))


def directive_condition(gate: ConsentGate, inputs: tuple | None, f: Any = consent_fact) -> ColumnElement[bool]:
    """The rows (of ``f``) :func:`directive_inputs` found withheld by directives."""
    if inputs is None:
        return false()
    blanket, hidden, _evaluated = inputs
    conds: list[ColumnElement[bool]] = []
    if blanket:
        conds.append(and_(f.c.patient_id.in_(list(blanket)), f.c.care_pref.is_(False),
                          f.c.res_type.not_in(sorted(gate.policy.demographic_types))))
    if hidden:
        conds.append(f.c.rid.in_(list(hidden)))
    return or_(*conds) if conds else false()


def hide_all_but(keep: ColumnElement[bool]) -> ColumnElement[bool]:
    """Hide every row except those matching ``keep``."""
    return not_(keep)

