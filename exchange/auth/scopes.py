"""SMART scopes: parsing (v1 and v2), grant intersection and enforcement.

SMART App Launch 2.x, "Scopes and Launch Context" (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):

* v1: ``<context>/<type>.<read|write|*>`` (``patient/*.read``, ``user/Observation.*``);
* v2: ``<context>/<type>.<cruds subset, in that order>[?<param>=<value>&...]``
  (``system/*.rs``, ``patient/Observation.rs?category=http://...|laboratory``);
* context is ``patient`` (bound to one patient's compartment), ``user`` (what the user
  may see) or ``system`` (backend services).

:func:`check_access` maps each FHIR interaction to the permission it needs and raises
:class:`~exchange.outcome.Forbidden` (403) when no granted scope covers it.
:func:`granular_filters` gives the search parameters a v2 granular scope imposes and
:func:`patient_restriction` the patient a ``patient/`` token is confined to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from exchange.outcome import Forbidden
from exchange.pipeline.context import Requester

CONTEXTS = ("patient", "user", "system")
PERMISSION_ORDER = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)(\?.+)?$")

#: the permission each interaction needs (None: no resource permission needed)
INTERACTION_PERMISSION: dict[str, str | None] = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "operation": "r",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "batch": None,
    "transaction": None,
    "capabilities": None,
}


@dataclass(frozen=True)
class Scope:
    """One parsed SMART resource scope."""

    context: str  # patient | user | system
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]  # subset of c r u d s
    query: tuple[tuple[str, str], ...] = ()  # v2 granular constraint, ANDed
    v1: bool = False

    def __str__(self) -> str:
        perms = "".join(p for p in PERMISSION_ORDER if p in self.permissions)
        if self.v1 and not self.query:
            for word, letters in _V1.items():
                if perms == letters:
                    perms = word
                    break
        text = f"{self.context}/{self.resource_type}.{perms}"
        return text + ("?" + urlencode(self.query, safe="|:/") if self.query else "")

    def covers(self, resource_type: str | None) -> bool:
        return self.resource_type == "*" or self.resource_type == resource_type


def parse_scope(text: str) -> Scope | None:
    """A :class:`Scope`, or None for anything that is not a well-formed resource scope."""
    m = _SCOPE_RE.match(text.strip())
    if not m:
        return None
    context, rtype, perm, query = m.groups()
    if perm in _V1:
        perms, v1 = _V1[perm], True
    else:
        positions = [PERMISSION_ORDER.find(p) for p in perm]
        if -1 in positions or positions != sorted(set(positions)):
            return None  # v2 letters must be a subset of c r u d s, in that order
        perms, v1 = perm, False
    pairs: tuple[tuple[str, str], ...] = ()
    if query:
        if v1:
            return None  # granular constraints exist only in v2 syntax
        parsed = parse_qsl(query[1:], keep_blank_values=False, strict_parsing=False)
        if not parsed or any(not k or not v for k, v in parsed):
            return None
        pairs = tuple(parsed)
    return Scope(context, rtype, frozenset(perms), pairs, v1)


def parse_scopes(scopes: str | Iterable[str]) -> list[Scope]:
    items = scopes.split() if isinstance(scopes, str) else scopes
    return [s for s in (parse_scope(x) for x in items) if s is not None]


def intersect(requested: Scope, registered: Scope) -> Scope | None:
    """The part of ``requested`` that ``registered`` allows (None when nothing)."""
    if requested.context != registered.context:
        return None
    if requested.resource_type == "*":
        rtype = registered.resource_type
    elif registered.resource_type in ("*", requested.resource_type):
        rtype = requested.resource_type
    else:
        return None
    perms = requested.permissions & registered.permissions
    if not perms:
        return None
    query = requested.query + tuple(q for q in registered.query if q not in requested.query)
    return Scope(requested.context, rtype, perms, query, requested.v1)


def grant(
    requested: str | Iterable[str], registered: str | Iterable[str], contexts: Iterable[str]
) -> list[str]:
    """Granted scopes = requested ∩ registered, restricted to ``contexts``; de-duplicated."""
    allowed = set(contexts)
    out: list[str] = []
    regs = parse_scopes(registered)
    for req in parse_scopes(requested):
        if req.context not in allowed:
            continue
        for reg in regs:
            got = intersect(req, reg)
            if got is not None and str(got) not in out:
                out.append(str(got))
    return out


def confine(scopes: Iterable[str]) -> list[str]:
    """Drop ``patient/`` scopes when ``user/`` or ``system/`` scopes are present.

    A token is either confined to one patient or not at all; mixing would let a
    ``patient/`` scope open resource types the ``user/`` scopes do not cover, for every
    patient. Non-resource scopes (``openid``, ``launch``...) are kept as they are.
    """
    items = list(scopes)
    parsed = [parse_scope(x) for x in items]
    if any(p is not None and p.context != "patient" for p in parsed):
        return [x for x, p in zip(items, parsed, strict=True) if p is None or p.context != "patient"]
    return items


def _usable(requester: Requester) -> list[Scope]:
    """Scopes that count for this requester (patient/ scopes need a bound patient)."""
    return [
        s
        for s in parse_scopes(confine(sorted(requester.scopes)))
        if s.context != "patient" or requester.patient_id or requester.kind == "anonymous"
    ]


def check_access(requester: Requester, interaction: str, resource_type: str | None) -> None:
    """Raise :class:`Forbidden` unless a granted scope allows ``interaction``.

    System-level interactions (``search-system``, ``history-system``; ``resource_type``
    None) need a wildcard (``*``) scope; a search over ``_type=A,B`` should be checked
    per type with ``search-type``. ``batch``/``transaction`` need any resource scope:
    every entry is checked again on its own. ``capabilities`` is always allowed.
    """
    if interaction not in INTERACTION_PERMISSION:
        raise ValueError(f"unknown interaction {interaction!r}")
    if interaction == "capabilities":
        return
    needed = INTERACTION_PERMISSION[interaction]
    scopes = _usable(requester)
    if needed is None:
        if scopes:
            return
    elif any(needed in s.permissions and s.covers(resource_type or "*") for s in scopes):
        return
    what = resource_type or "all resource types"
    raise Forbidden(f"The granted scopes do not allow {interaction} on {what}")


def granular_filters(
    requester: Requester, resource_type: str, *, interaction: str = "search-type"
) -> list[tuple[str, str]] | None:
    """Search parameters a v2 granular scope imposes on ``resource_type`` (None: none).

    If any covering scope is unconstrained, access is unrestricted (None). If every
    covering scope constrains the same single parameter, the values are OR-ed
    (``category=a,b``, FHIR search §3.1.1.4.2). Otherwise all constraints are AND-ed,
    which is narrower than the union of the scopes (safe: it never shows more).
    """
    needed = INTERACTION_PERMISSION.get(interaction) or "s"
    covering = [
        s for s in _usable(requester) if needed in s.permissions and s.covers(resource_type)
    ]
    if not covering or any(not s.query for s in covering):
        return None
    names = {name for s in covering for name, _ in s.query}
    if len(names) == 1 and all(len(s.query) == 1 for s in covering):
        values: list[str] = []
        for s in covering:
            if s.query[0][1] not in values:
                values.append(s.query[0][1])
        return [(names.pop(), ",".join(values))]
    out: list[tuple[str, str]] = []
    for s in covering:
        out.extend(q for q in s.query if q not in out)
    return out


def patient_restriction(requester: Requester) -> str | None:
    """The patient id a ``patient/``-scoped token is confined to (None: not confined).

    A requester is confined when it is a patient (citizen) session, or when all of its
    resource scopes are ``patient/`` scopes. An empty string means confined to no
    patient at all (a patient session without a bound patient sees nothing).
    """
    if requester.kind == "anonymous":
        return None
    scopes = parse_scopes(confine(requester.scopes))
    if requester.kind == "patient" or (scopes and all(s.context == "patient" for s in scopes)):
        return requester.patient_id or ""
    return None


def check_patient(requester: Requester, patient_ids: Iterable[str]) -> None:
    """Raise :class:`Forbidden` if a confined requester reaches any other patient."""
    bound = patient_restriction(requester)
    if bound is None:
        return
    for pid in patient_ids:
        if not bound or pid != bound:
            raise Forbidden("This token is limited to a single patient's record")
