"""Patient sharing directives: FHIR R4 Consent (consent.html) with nested provisions.

A *sharing directive* is a Consent with ``scope`` ``patient-privacy``, ``status``
``active`` and, when the root provision has a ``period``, ``now`` inside it. A Consent
with scope ``adr`` (advance directive, e.g. DNR) is a care preference, not a directive.

Evaluation order and conflict rule (docs/consent-policy.md, "Evaluation order")
------------------------------------------------------------------------------------
1. A provision *applies* to a request when every criterion it states matches (absent
   criteria match anything): ``period`` contains now; an ``actor`` is the requester's
   organisation (ODS code), the practitioner (resource id or SDS user id) or job role;
   ``action`` includes access/use/disclose; ``securityLabel`` is on the resource;
   ``purpose`` is the requester's purpose of use; ``class`` is the resource type (or one
   of its meta.tag codes); ``code`` occurs in the resource; ``dataPeriod`` contains the
   resource's clinical date; ``data`` references the resource.
2. The root provision's ``type`` gives the base (or, when absent, ``policyRule``
   OPTIN = permit / OPTOUT = deny; else no opinion).
3. Nested provisions are exceptions to their parent: an applying child's result replaces
   its parent's, recursively (the most specific applying provision decides).
4. Conflict between applying siblings, and between several directives of the patient:
   **deny wins** over permit.
Each result records the Consent id and the provision path (e.g.
``provision.provision[1]``) that decided, and whether that provision was *explicit*
about the resource (it named its class, code, security label or the resource itself)
-- only explicit provisions can hide care preferences or demographics, and only
explicit permits unlock legally restricted items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from consent.labels import iter_codings, security_labels

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ACCESS_ACTIONS = {"access", "use", "disclose"}
_DATE_FIELDS = ("effectiveDateTime", "onsetDateTime", "recordedDate", "authoredOn", "issued",
                "date", "occurrenceDateTime", "performedDateTime", "created", "authored")
_PERIOD_FIELDS = ("effectivePeriod", "period", "performedPeriod", "onsetPeriod")


def parse_instant(value: Any, *, end: bool = False) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware UTC datetime (partial dates widened)."""
    if not isinstance(value, str) or not value:
        return None
    v = value.strip()
    try:
        if len(v) == 4:
            d = date(int(v), 12 if end else 1, 31 if end else 1)
        elif len(v) == 7:
            y, m = int(v[:4]), int(v[5:7])
            if end:
                nxt = date(y + (m == 12), m % 12 + 1, 1)
                d = date.fromordinal(nxt.toordinal() - 1)
            else:
                d = date(y, m, 1)
        elif len(v) == 10:
            d = date.fromisoformat(v)
        else:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        return None
    if end:
        return datetime(d.year, d.month, d.day, 23, 59, 59, 999999, tzinfo=UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def in_period(period: dict[str, Any] | None, when: datetime) -> bool:
    if not isinstance(period, dict):
        return True
    start = parse_instant(period.get("start"))
    stop = parse_instant(period.get("end"), end=True)
    return (start is None or start <= when) and (stop is None or when <= stop)


def resource_date(resource: dict[str, Any]) -> datetime | None:
    for f in _DATE_FIELDS:
        if f in resource:
            d = parse_instant(resource.get(f))
            if d:
                return d
    for f in _PERIOD_FIELDS:
        p = resource.get(f)
        if isinstance(p, dict):
            d = parse_instant(p.get("start")) or parse_instant(p.get("end"))
            if d:
                return d
    return parse_instant((resource.get("meta") or {}).get("lastUpdated"))


@dataclass(frozen=True)
class Requesting:
    """The requester as a directive sees it (resolved identifiers, not references)."""

    organization: str | None = None  # ODS code
    practitioner_ids: frozenset[str] = frozenset()  # resource ids and SDS user ids
    role: str | None = None
    purpose: str | None = None


@dataclass
class Actor:
    org_ods: set[str] = field(default_factory=set)
    practitioners: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)

    def matches(self, who: Requesting) -> bool:
        return bool(
            (who.organization and who.organization in self.org_ods)
            or (who.practitioner_ids & self.practitioners)
            or (who.role and who.role in self.roles)
        )


@dataclass
class Provision:
    path: str
    type: str | None
    period: dict[str, Any] | None = None
    actors: list[Actor] = field(default_factory=list)
    actions: set[str] = field(default_factory=set)
    labels: set[tuple[str, str]] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)
    codes: set[tuple[str, str]] = field(default_factory=set)
    data_period: dict[str, Any] | None = None
    data: set[str] = field(default_factory=set)
    children: list[Provision] = field(default_factory=list)

    @property
    def explicit(self) -> bool:
        """Names what it is about (class, code, label or instance), not a blanket rule."""
        return bool(self.classes or self.codes or self.labels or self.data)

    def applies_to_requester(self, who: Requesting, now: datetime) -> bool:
        """The requester-side criteria only: period, actor, action, purpose."""
        if not in_period(self.period, now):
            return False
        if self.actors and not any(a.matches(who) for a in self.actors):
            return False
        if self.actions and not (self.actions & ACCESS_ACTIONS):
            return False
        return not (self.purposes and (who.purpose or "") not in self.purposes)

    def applies(self, who: Requesting, resource: dict[str, Any], now: datetime) -> bool:
        if not self.applies_to_requester(who, now):
            return False
        if self.labels and not (self.labels & security_labels(resource)):
            return False
        if self.classes:
            rtype = resource.get("resourceType", "")
            tags = {t.get("code") for t in (resource.get("meta") or {}).get("tag") or []
                    if isinstance(t, dict)}
            if rtype not in self.classes and not (self.classes & tags):
                return False
        if self.codes and not any(c in self.codes for c in iter_codings(resource)):
            return False
        if self.data_period is not None:
            d = resource_date(resource)
            if d is None or not in_period(self.data_period, d):
                return False
        if self.data:
            ref = f"{resource.get('resourceType')}/{resource.get('id')}"
            if ref not in self.data:
                return False
        return True


@dataclass(frozen=True)
class Outcome:
    effect: str  # permit | deny
    consent_id: str
    path: str
    explicit: bool

    @property
    def rule(self) -> str:
        return f"consent.Consent/{self.consent_id}#{self.path}"


@dataclass
class Directive:
    consent_id: str
    patient_id: str
    root: Provision
    date: datetime | None = None

    def evaluate(self, who: Requesting, resource: dict[str, Any], now: datetime) -> Outcome | None:
        return _eval(self, self.root, who, resource, now)


def restrictions_for(d: Directive, who: Requesting, now: datetime) -> list[Provision]:
    """The deny provisions of ``d`` that take effect for this requester on *some* data.

    Evaluated on the requester-side criteria only (resource criteria are assumed to
    match), so the answer depends on the directive and the requester, never on which
    resources exist: it drives the "withheld at the patient's request" notice without
    becoming a way to probe for hidden data.
    """
    found: list[Provision] = []

    def walk(p: Provision, inherited: str | None) -> None:
        if not p.applies_to_requester(who, now):
            return
        effect = p.type or inherited
        kids = [c for c in p.children if c.applies_to_requester(who, now)]
        blanket_kids = [c for c in kids if not c.explicit]
        if effect == "deny" and not any(c.type == "permit" for c in blanket_kids):
            found.append(p)
        for c in kids:
            walk(c, effect)

    walk(d.root, None)
    return found


def _eval(d: Directive, p: Provision, who: Requesting, res: dict[str, Any],
          now: datetime) -> Outcome | None:
    if not p.applies(who, res, now):
        return None
    result = Outcome(p.type, d.consent_id, p.path, p.explicit) if p.type else None
    child_results = [r for c in p.children if (r := _eval(d, c, who, res, now)) is not None]
    if child_results:
        denies = [r for r in child_results if r.effect == "deny"]
        result = denies[0] if denies else child_results[0]
    return result


def combine(outcomes: list[Outcome]) -> Outcome | None:
    """Across several directives: deny wins; otherwise the first permit."""
    denies = [o for o in outcomes if o.effect == "deny"]
    if denies:
        return denies[0]
    return outcomes[0] if outcomes else None


def _codes(concepts: Any) -> set[tuple[str, str]]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    out = set()
    for cc in concepts or []:
        for c in (cc or {}).get("coding") or []:
            if isinstance(c, dict) and c.get("code"):
                out.add((c.get("system", ""), c["code"]))
    return out


def _ref_of(actor_ref: Any) -> tuple[str | None, tuple[str, str] | None]:
    """(literal reference, (identifier system, value)) of an actor reference."""
    if not isinstance(actor_ref, dict):
        return None, None
    ident = actor_ref.get("identifier")
    pair = None
    if isinstance(ident, dict) and ident.get("value"):
        pair = (ident.get("system", ""), str(ident["value"]))
    ref = actor_ref.get("reference")
    return (ref if isinstance(ref, str) else None), pair


def type_id(ref: str) -> str:
    """``Type/id`` of a relative or absolute reference, version suffix dropped."""
    parts = ref.split("/_history")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def parse_provision(p: dict[str, Any], path: str, resolve: Any) -> Provision:
    """Parse one provision; ``resolve(reference) -> Actor`` turns actor references into ids."""
    prov = Provision(path=path, type=p.get("type") if p.get("type") in ("permit", "deny") else None)
    prov.period = p.get("period") if isinstance(p.get("period"), dict) else None
    for a in p.get("actor") or []:
        actor = resolve(a.get("reference"))
        for _sys, code in _codes(a.get("role")):
            if code[:1] == "R" and code[1:].isdigit():  # an RBAC job role code
                actor.roles.add(code)
        prov.actors.append(actor)
    prov.actions = {c for _s, c in _codes(p.get("action"))}
    prov.labels = {(c.get("system", ""), c.get("code", "")) for c in p.get("securityLabel") or []
                   if isinstance(c, dict)}
    prov.purposes = {c.get("code", "") for c in p.get("purpose") or [] if isinstance(c, dict)}
    prov.classes = {c.get("code", "") for c in p.get("class") or [] if isinstance(c, dict)}
    prov.codes = _codes(p.get("code"))
    prov.data_period = p.get("dataPeriod") if isinstance(p.get("dataPeriod"), dict) else None
    for dref in p.get("data") or []:
        ref = ((dref or {}).get("reference") or {}).get("reference")
        if isinstance(ref, str):
            prov.data.add(type_id(ref))
    for i, child in enumerate(p.get("provision") or []):
        if isinstance(child, dict):
            prov.children.append(parse_provision(child, f"{path}.provision[{i}]", resolve))
    return prov


def is_privacy_directive(consent: dict[str, Any]) -> bool:
    return any(code == "patient-privacy" for _s, code in _codes(consent.get("scope")))


def is_uniform(d: Directive, who: Requesting, now: datetime) -> bool:
    """True when no provision that applies to this requester tests the resource (class,
    code, label, instance, dataPeriod): the directive then decides the same way for
    every resource of the patient, which SQL can express without per-resource checks."""
    def walk(p: Provision) -> bool:
        if not p.applies_to_requester(who, now):
            return True
        if p.explicit or p.data_period is not None:
            return False
        return all(walk(c) for c in p.children)

    return walk(d.root)


def widens_for(d: Directive, who: Requesting, now: datetime) -> bool:
    """True when a provision that applies to this requester *explicitly permits*
    something (class, code, label or instance): such a permit can unlock what the policy
    otherwise withholds (legally restricted items, a limited role's out-of-scope types),
    so SQL cannot hide those for this patient without evaluating each resource."""
    def walk(p: Provision, inherited: str | None) -> bool:
        if not p.applies_to_requester(who, now):
            return False
        effect = p.type or inherited
        if effect == "permit" and p.explicit:
            return True
        return any(walk(c, effect) for c in p.children)

    return walk(d.root, None)


def in_force(d: Directive, now: datetime) -> bool:
    return in_period(d.root.period, now)


def parse_directive(consent: dict[str, Any], resolve: Any, now: datetime | None) -> Directive | None:
    """A :class:`Directive` for an in-force patient-privacy Consent, else None
    (``now`` None: skip the in-force check, for caching; check :func:`in_force` later)."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return None
    if not is_privacy_directive(consent):
        return None
    patient = ((consent.get("patient") or {}).get("reference") or "")
    if not patient.startswith("Patient/"):
        return None
    root_doc = consent.get("provision") if isinstance(consent.get("provision"), dict) else {}
    root = parse_provision(root_doc, "provision", resolve)
    if now is not None and not in_period(root.period, now):
        return None
    if root.type is None:
        rules = {c for _s, c in _codes(consent.get("policyRule"))}
        root.type = "permit" if "OPTIN" in rules else "deny" if "OPTOUT" in rules else None
    return Directive(consent_id=str(consent.get("id")), patient_id=patient[8:].split("/")[0],
                     root=root, date=parse_instant(consent.get("dateTime")))
