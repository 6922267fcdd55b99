"""The consent gate: the DisclosureGate behind the one choke point (issue 5).

``ConsentGate(engine, settings)`` implements ``exchange.pipeline.disclosure.
DisclosureGate``: :meth:`ConsentGate.check` decides for each resource about to leave,
:meth:`ConsentGate.sql_filter` narrows searches in SQL before LIMIT where a rule can be
expressed there (no relationship, legally restricted labels, other patients' records,
system-client scopes); ``check`` is always the backstop. Rule order for a clinician
(``user``), each denial carrying its rule id (docs/consent-policy.md):

1. non-patient reference data (policy ``non_patient_types``) -> permit;
2. role in a role group (``policy.no-role``), purpose allowed (``policy.purpose``),
   break-glass states a reason (``break-glass.no-reason``);
3. legally restricted labels outside the authoring organisation -> deny
   ``label.legally-restricted`` unless a Consent provision explicitly permits it
   (break-glass never unlocks it);
4. no care relationship -> deny ``relationship.none`` unless break-glass;
5. the patient's directives (consent.directives): a denial -> deny with the Consent and
   provision as rule and a notice "withheld at the patient's request", unless
   break-glass; demographics and care preferences are *always shared for direct care*
   unless the deciding provision is explicit about them;
6. limited role groups see only their scope (``policy.role-scope``) unless a Consent
   explicitly permits more.

The SQL side lives in consent/narrowing.py. The informational notice "withheld at the
patient's request" is attached to every released resource of, and every search scoped
to, a patient whose directive restricts this requester (it depends on the directive,
never on which resources exist, so it cannot be used to probe for hidden data).

Per-request state (relationships, directives, resolved organisations) is cached on the
root RequestContext (``ctx._consent``); ``ctx.relationship`` is set for the audit log
and ``ctx.break_glass_used`` when break-glass actually unlocked something.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, bindparam, false, func, select

from consent.care_preferences import load_codes
from consent.decisions import CARE_PREF_NOTICE, WITHHELD_NOTICE, deny, permit
from consent.directives import (
    Directive,
    Outcome,
    Requesting,
    combine,
    in_force,
    parse_directive,
    restrictions_for,
)
from consent.facts import facts_of, patient_id_of, set_active_policy
from consent.narrowing import AUDIT_TYPES, hidden_condition
from consent.policy import Policy, load_policy
from consent.relationship import org_refs_for, relationship_kind
from consent.resolve import make_resolver
from consent.tables import consent_fact
from exchange.pipeline.concerned import named_patients
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import PERMIT, Decision
from exchange.repository.stored import StoredResource
from exchange.settings import Settings

# The directive lookups, built once (they run on every clinician request). Both are
# range scans of ix_consent_fact_directive_patient: "patient_id > ''" rather than IS NOT
# NULL (ids are never empty), and no ORDER BY (rows are sorted here), because either of
# those made SQLite scan the whole table instead (1.3 ms at 28,000 resources, growing).
_DIRECTIVES = select(consent_fact.c.rid, consent_fact.c.patient_id).where(consent_fact.c.directive.is_(True))
_ONE_PATIENT = _DIRECTIVES.where(consent_fact.c.patient_id == bindparam("pid"))
_EVERY_PATIENT = _DIRECTIVES.where(consent_fact.c.patient_id > "")
BUILT_CONDITIONS = 256  # requester shapes whose hidden-rows expression is kept (consent.narrowing)


@dataclass
class _State:
    now: datetime
    who: Requesting
    org_refs: list[str] | None = None
    relationships: dict[str, str | None] = field(default_factory=dict)
    directives: dict[str, list[Directive]] = field(default_factory=dict)
    directive_hidden: list[int] | None = None  # rids of directive patients check denies
    directive_overflow: list[str] = field(default_factory=list)  # patients hidden wholesale
    directive_uniform: list[str] = field(default_factory=list)
    directive_evaluated: list[str] = field(default_factory=list)  # patients decided per resource
    all_directives_loaded: bool = False
    notices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # patient -> notices
    hidden: Any = None  # the request's hidden-rows condition (consent.narrowing), once built
    inputs: tuple | None = None  # what it was built from (for the access log)
    hidden_ready: bool = False


def _root(ctx: RequestContext) -> RequestContext:
    while ctx.parent is not None:
        ctx = ctx.parent
    return ctx


class ConsentGate:
    """Sharing rules for every resource that leaves (DisclosureGate protocol)."""

    def __init__(self, engine: Engine | None, settings: Settings, policy: Policy | None = None):
        self.engine = engine
        self.settings = settings
        self.policy = policy or load_policy(settings.consent_policy_path)
        set_active_policy(self.policy)
        #: parsed directives by (rid, version, lastUpdated): a Consent version never changes
        #: (actor references are resolved when first parsed; docs/consent-policy.md "Limits")
        self._parsed: dict[tuple[int, int, str], Directive | None] = {}
        self._built: OrderedDict[tuple, Any] = OrderedDict()
        self._built_policy: Policy | None = None
        self._built_lock = threading.Lock()

    # -- per-request state ---------------------------------------------------------
    def _state(self, ctx: RequestContext) -> _State:
        root = _root(ctx)
        st = getattr(root, "_consent", None)
        if st is None:
            r = root.requester
            st = _State(
                now=datetime.now(UTC),
                who=Requesting(organization=r.organization,
                               practitioner_ids=frozenset({r.practitioner_id} - {None}),
                               role=r.role, purpose=r.purpose_of_use or "TREAT"),
            )
            root._consent = st
        return st

    def relationship(self, conn: Connection, ctx: RequestContext, patient_id: str) -> str | None:
        st = self._state(ctx)
        if patient_id not in st.relationships:
            ods = ctx.requester.organization
            if st.org_refs is None:
                st.org_refs = org_refs_for(conn, ods) if ods else []
            st.relationships[patient_id] = relationship_kind(
                conn, ods, st.org_refs, patient_id, st.now,
                self.settings.relationship_lookback_days, self.policy.relationship_links)
        kind = st.relationships[patient_id]
        root = _root(ctx)
        found = kind is not None
        prev = getattr(root, "relationship", None)
        root.relationship = found if prev is None else (prev and found)
        if ctx is not root:
            ctx.relationship = found
        return kind

    def directives(self, conn: Connection, ctx: RequestContext, patient_id: str) -> list[Directive]:
        """The patient's in-force directives (cached on the request)."""
        st = self._state(ctx)
        if patient_id not in st.directives and not st.all_directives_loaded:
            self._load_directives(conn, ctx, _ONE_PATIENT, {"pid": patient_id})
            st.directives.setdefault(patient_id, [])
        return st.directives.get(patient_id, [])

    def all_directives(self, conn: Connection, ctx: RequestContext) -> dict[str, list[Directive]]:
        """In-force directives of every patient who has one (loaded once per request)."""
        st = self._state(ctx)
        if not st.all_directives_loaded:
            self._load_directives(conn, ctx, _EVERY_PATIENT)
            st.all_directives_loaded = True
        return {pid: ds for pid, ds in st.directives.items() if ds}

    def _load_directives(self, conn: Connection, ctx: RequestContext, query: Select,
                         params: dict[str, Any] | None = None) -> None:
        from exchange.repository.store import read_many_current

        st = self._state(ctx)
        rows = sorted(conn.execute(query, params or {}).all(), key=lambda r: r.rid)
        fresh: dict[str, list[Directive]] = {}
        resolve = None
        for res in read_many_current(conn, [r.rid for r in rows]):
            key = (res.rid, res.version_id, res.last_updated.isoformat())
            if key not in self._parsed:
                resolve = resolve or make_resolver(conn)
                if len(self._parsed) > 20000:
                    self._parsed.clear()
                self._parsed[key] = parse_directive(res.data, resolve, None)
            d = self._parsed[key]
            if d is not None and in_force(d, st.now):
                fresh.setdefault(d.patient_id, []).append(d)
        for pid in {r.patient_id for r in rows}:
            if pid not in st.directives:
                st.directives[pid] = fresh.get(pid, [])

    # -- DisclosureGate --------------------------------------------------------------
    def check(self, conn: Connection, ctx: RequestContext, resource: StoredResource) -> Decision:
        if not self.settings.consent_enabled or ctx.requester.kind == "anonymous":
            return PERMIT
        if resource.deleted or resource.content is None:
            return self._delete_marker(conn, ctx, resource)
        decision = self.decide(conn, ctx, resource.data)
        pid = patient_id_of(resource.data)
        if decision.effect == "permit" and pid:
            notices = self.notices_for(conn, ctx, pid)
            if notices:  # the patient's directive withholds something from this requester
                decision = replace(decision, notice=" ".join(notices))
        return decision

    def _delete_marker(self, conn: Connection, ctx: RequestContext, res: StoredResource) -> Decision:
        """A history entry for a delete carries no content: decide from the facts kept for
        the resource (consent_fact) -- the patient it was about, its labels and author --
        and, lacking content to test provisions against, deny when any directive of that
        patient restricts this requester."""
        if res.resource_type == "Provenance":  # as for a live one without visible targets
            return deny("provenance.target-hidden", "a deleted Provenance names no visible target")
        row = conn.execute(select(consent_fact).where(consent_fact.c.rid == res.rid)).first()
        if row is None or row.patient_id is None:
            return permit("policy.no-patient", "deleted; not about a patient")
        stub: dict[str, Any] = {"resourceType": res.resource_type, "id": res.id,
                                "subject": {"reference": f"Patient/{row.patient_id}"}}
        req = ctx.requester
        if req.kind == "patient":
            if row.patient_id != req.patient_id:
                return deny("patient.other-record", "not the patient's own record")
            if row.not_for_patient:
                return deny("label.not-for-patient", "labelled not for disclosure to the patient")
            return permit("patient.own-record")
        if row.restricted and not (req.organization and row.author_org == req.organization):
            return deny("label.legally-restricted", "legally restricted")
        decision = self.decide(conn, ctx, stub)
        if decision.effect == "permit" and self.notices_for(conn, ctx, row.patient_id):
            return deny("consent.directive", "withheld at the patient's request")
        return decision

    def notices_for(self, conn: Connection, ctx: RequestContext, patient_id: str) -> tuple[str, ...]:
        """The "withheld at the patient's request" notices for this patient and requester.

        They depend only on the patient's directives and who is asking (consent.directives.
        restrictions_for), never on which resources exist, so they cannot be used to probe
        for hidden data. Break-glass that overrides objections gives none."""
        st = self._state(ctx)
        if patient_id in st.notices:
            return st.notices[patient_id]
        req = ctx.requester
        out: tuple[str, ...] = ()
        applies = req.kind == "user" or (
            req.kind == "system" and (sp := self.policy.system_policy(req.client_id)) is not None
            and sp.honour_objections)
        btg = req.kind == "user" and req.purpose_of_use == "BTG"
        if applies and not (btg and "objection" in self.policy.break_glass_overrides):
            found = [p for d in self.directives(conn, ctx, patient_id)
                     for p in restrictions_for(d, st.who, st.now)]
            if found:
                cp = load_codes()
                care = any(p.classes & cp.resource_types or p.codes & cp.codes for p in found)
                out = (WITHHELD_NOTICE, CARE_PREF_NOTICE) if care else (WITHHELD_NOTICE,)
        st.notices[patient_id] = out
        return out

    def decide(self, conn: Connection, ctx: RequestContext, data: dict[str, Any],
               _depth: int = 0) -> Decision:
        """The decision for one resource (a parsed dict), with the rule that made it."""
        kind = ctx.requester.kind
        if kind == "anonymous":
            return permit("requester.anonymous", "authorisation is switched off")
        rtype = data.get("resourceType", "")
        if rtype == "Provenance":
            return self._provenance(conn, ctx, data, _depth)
        if kind == "patient":
            return self._patient(ctx, data)
        if rtype in self.policy.non_patient_types:
            return permit("policy.non-patient", f"{rtype} is directory/reference data")
        if kind == "system":
            return self._system(conn, ctx, data)
        return self._user(conn, ctx, data)

    def _provenance(self, conn: Connection, ctx: RequestContext, data: dict[str, Any],
                    depth: int) -> Decision:
        """A Provenance is visible only when every target it names is visible."""
        from exchange.repository.store import read_refs

        refs = []
        for t in data.get("target") or []:
            r = (t or {}).get("reference", "")
            parts = r.split("/_history")[0].split("/")
            if len(parts) >= 2:
                refs.append((parts[-2], parts[-1]))
        if not refs or depth > 1:
            return deny("provenance.target-hidden", "Provenance without visible targets")
        found = read_refs(conn, refs)
        if len(found) < len(set(refs)):
            return deny("provenance.target-hidden", "a target does not exist or is deleted")
        for res in found:
            if self.decide(conn, ctx, res.data, depth + 1).effect == "deny":
                return deny("provenance.target-hidden", "a target is not visible")
        return permit("provenance.targets-visible")

    def _patient(self, ctx: RequestContext, data: dict[str, Any]) -> Decision:
        """A citizen's own app: their own record minus items not for disclosure to them."""
        rtype = data.get("resourceType", "")
        if rtype in self.policy.non_patient_types:
            return permit("policy.non-patient")
        f = facts_of(data, self.policy)
        if f.patient_id is None or f.patient_id != ctx.requester.patient_id:
            return deny("patient.other-record", "not the patient's own record")
        if f.not_for_patient:
            return deny("label.not-for-patient", "labelled not for disclosure to the patient")
        return permit("patient.own-record")

    def _outcome(self, conn: Connection, ctx: RequestContext, pid: str,
                 data: dict[str, Any]) -> Outcome | None:
        st = self._state(ctx)
        ds = self.directives(conn, ctx, pid)
        outcomes = [o for d in ds if (o := d.evaluate(st.who, data, st.now)) is not None]
        return combine(outcomes)

    def _withheld(self, ctx: RequestContext, pid: str, outcome: Outcome, care_pref: bool) -> Decision:
        what = "end-of-life preferences" if care_pref else "information"
        return deny(outcome.rule, f"{what} withheld at the patient's request")

    def _user(self, conn: Connection, ctx: RequestContext, data: dict[str, Any]) -> Decision:
        req = ctx.requester
        pol = self.policy
        rtype = data.get("resourceType", "")
        group = pol.group_for_role(req.role)
        if group is None:
            return deny("policy.no-role", f"job role {req.role!r} is in no role group")
        purpose = req.purpose_of_use or "TREAT"
        if purpose not in group.purposes:
            return deny("policy.purpose", f"purpose {purpose} not allowed for {group.name}")
        btg = purpose == "BTG"
        if btg and pol.break_glass_requires_reason and not (req.break_glass_reason or "").strip():
            return deny("break-glass.no-reason", "break-glass requires a stated reason")
        if rtype in AUDIT_TYPES:
            return deny("policy.audit-restricted", "audit records are for IG use only")
        f = facts_of(data, pol)
        if f.patient_id is None:
            return permit("policy.no-patient", "not about a patient")
        outcome = self._outcome(conn, ctx, f.patient_id, data)
        explicit_permit = outcome is not None and outcome.effect == "permit" and outcome.explicit
        own_org = bool(req.organization) and f.author_org == req.organization
        if f.restricted and not own_org and not explicit_permit:
            return deny("label.legally-restricted",
                        "legally restricted and authored by another organisation")
        bg_used = False
        rel = self.relationship(conn, ctx, f.patient_id)
        if rel is None and pol.relationship_required:
            if not (btg and "relationship" in pol.break_glass_overrides):
                return deny("relationship.none", "no care relationship with the patient")
            bg_used = True
        exempt = f.care_pref or rtype in pol.demographic_types
        if outcome is not None and outcome.effect == "deny" and not (exempt and not outcome.explicit):
            if btg and "objection" in pol.break_glass_overrides:
                bg_used = True
            else:
                return self._withheld(ctx, f.patient_id, outcome, f.care_pref)
        if group.access == "limited" and not exempt and rtype not in group.resource_types:
            tags = {(t.get("system"), t.get("code")) for t in (data.get("meta") or {}).get("tag") or []
                    if isinstance(t, dict)}
            if not (tags & group.tags) and not explicit_permit:
                return deny("policy.role-scope", f"outside what role group {group.name} may see")
        if bg_used:
            _root(ctx).break_glass_used = True
            return permit("break-glass", req.break_glass_reason or "")
        if outcome is not None and outcome.effect == "permit":
            return permit(outcome.rule, "permitted by the patient's consent")
        if outcome is not None:
            return permit("always-shared.direct-care", "care preference or demographics")
        return permit(f"relationship.{rel}" if rel else "policy.role", "")

    def _system(self, conn: Connection, ctx: RequestContext, data: dict[str, Any]) -> Decision:
        sp = self.policy.system_policy(ctx.requester.client_id)
        rtype = data.get("resourceType", "")
        if sp is None or sp.access == "none":
            return deny("policy.system-client", "no sharing policy for this client")
        if sp.access == "types" and rtype not in sp.resource_types:
            return deny("policy.system-client", f"{rtype} is outside this client's policy")
        if rtype in AUDIT_TYPES and sp.access != "full":
            return deny("policy.audit-restricted", "audit records are for IG use only")
        f = facts_of(data, self.policy)
        if f.patient_id is None:
            return permit("policy.no-patient")
        outcome = self._outcome(conn, ctx, f.patient_id, data)
        explicit_permit = outcome is not None and outcome.effect == "permit" and outcome.explicit
        if f.restricted and not sp.legally_restricted and not explicit_permit:
            return deny("label.legally-restricted", "legally restricted")
        exempt = f.care_pref or rtype in self.policy.demographic_types
        if (sp.honour_objections and outcome is not None and outcome.effect == "deny"
                and not (exempt and not outcome.explicit)):
            return self._withheld(ctx, f.patient_id, outcome, f.care_pref)
        return permit(f"policy.system-client.{sp.client_id}")

    # -- SQL narrowing before LIMIT --------------------------------------------------
    def narrowing_rules(self, ctx: RequestContext) -> set[str]:
        """The rules whose SQL narrowing was in force for this request (access log)."""
        from consent.narrowing import rules_in_force

        st = getattr(_root(ctx), "_consent", None)
        if st is None or st.inputs is None:
            return set()
        return rules_in_force(self, ctx, st.inputs)

    def built_condition(self, shape: tuple, inputs: tuple, build: Callable[[], Any]) -> Any:
        """The hidden-rows expression for ``inputs`` (consent.narrowing), built once per
        distinct inputs and policy. One slot per ``shape`` (the inputs without what moves
        with time), replaced when the inputs change; bounded, least recently used first."""
        with self._built_lock:
            if self._built_policy is not self.policy:
                self._built.clear()
                self._built_policy = self.policy
            hit = self._built.get(shape)
            if hit is not None and hit[0] == inputs:
                self._built.move_to_end(shape)
                return hit[1]
        cond = build()
        with self._built_lock:
            self._built[shape] = (inputs, cond)
            self._built.move_to_end(shape)
            while len(self._built) > BUILT_CONDITIONS:
                self._built.popitem(last=False)
        return cond

    #: the SQL narrowing depends on the requester and the data, never on the resource type
    type_independent = True

    def sql_filter(self, conn: Connection, ctx: RequestContext, resource_type: str | None,
                   rid_column: Any) -> ColumnElement[bool] | None:
        if not self.settings.consent_enabled or ctx.requester.kind == "anonymous":
            return None
        st = self._state(ctx)
        if not st.hidden_ready:  # built once per request: it does not depend on the type
            st.hidden, st.hidden_ready = hidden_condition(self, conn, ctx), True
        # after the condition: it loaded every directive, so the notices need no query
        for pid in sorted(named_patients(ctx)):
            for notice in self.notices_for(conn, ctx, pid):
                if notice not in ctx.informational:
                    ctx.informational.append(notice)
        hidden = st.hidden
        if hidden is None:
            return None
        f = consent_fact
        # A correlated scalar subquery (one primary-key probe per candidate row), not NOT
        # EXISTS: PostgreSQL flattens NOT EXISTS into an anti-join that hashes every hidden
        # fact in the database (a sequential scan) even when the query has ten candidates.
        hidden_here = select(hidden).where(f.c.rid == rid_column).scalar_subquery()
        return func.coalesce(hidden_here, false()) == false()


__all__ = ["CARE_PREF_NOTICE", "WITHHELD_NOTICE", "ConsentGate"]
