"""``POST /fhir/Patient/{id}/$access-check``: explain sharing decisions (issue 5).

Input: a Parameters resource describing the requester to explain for --
``kind`` (user | system | patient), ``role`` (RBAC job role code), ``organization``
(ODS code), ``practitioner`` (SDS user id), ``purpose`` (TREAT | ETREAT | BTG),
``breakGlassReason``, ``clientId`` (system clients), ``patient`` (patient tokens,
defaults to the instance), optional repeated ``resourceType`` to restrict the answer,
and ``detail`` = ``resource`` for one result per resource instead of per type.

Output: a Parameters resource (FHIR R4 parameters.html) with ``policyVersion``,
``relationship`` and one ``result`` per resource type (or resource): ``decision``
(permit | deny | partial), counts, and for every rule that decided, ``rule`` with the
Consent directive that decided when there is one. Nothing is released: the answer
contains decisions and ids, never resource content. Only system clients, anonymous
(auth off) and IG roles (R0001 Privacy Officer, R5105 Caldicott Guardian) may call it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
from sqlalchemy import Connection, or_, select

from consent.gate import ConsentGate
from consent.tables import consent_fact
from exchange.outcome import Forbidden, Invalid, NotFound
from exchange.pipeline.context import RequestContext, Requester
from exchange.pipeline.disclosure import gate_of
from exchange.repository.store import read_current, read_many_current
from exchange.settings import Settings

IG_ROLES = frozenset({"R0001", "R5105"})
_KINDS = ("user", "system", "patient")


def _values(parameters: dict[str, Any]) -> dict[str, list[str]]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise Invalid("$access-check takes a Parameters resource", code="structure")
    out: dict[str, list[str]] = defaultdict(list)
    for p in parameters.get("parameter") or []:
        if not isinstance(p, dict) or not p.get("name"):
            continue
        val = next((v for k, v in p.items() if k.startswith("value")), None)
        if val is not None:
            out[str(p["name"])].append(str(val))
    return out


def requester_from(values: dict[str, list[str]], patient_id: str) -> Requester:
    def one(name: str) -> str | None:
        v = values.get(name)
        return v[0] if v else None

    kind = one("kind") or "user"
    if kind not in _KINDS:
        raise Invalid(f"kind must be one of {', '.join(_KINDS)}", expression="Parameters.parameter")
    return Requester(
        kind=kind,  # type: ignore[arg-type]
        client_id=one("clientId"),
        role=one("role"),
        organization=one("organization"),
        practitioner_id=one("practitioner"),
        purpose_of_use=one("purpose") or ("TREAT" if kind == "user" else None),
        break_glass_reason=one("breakGlassReason"),
        patient_id=(one("patient") or patient_id) if kind == "patient" else None,
    )


def _authorise(ctx: RequestContext) -> None:
    r = ctx.requester
    if r.kind in ("system", "anonymous"):
        return
    if r.kind == "user" and r.role in IG_ROLES:
        return
    raise Forbidden("$access-check is for information-governance and system use")


def access_check(conn: Connection, ctx: RequestContext, settings: Settings, patient_id: str,
                 parameters: dict) -> bytes:
    """Explain, per resource type (or per resource), what a requester would be shown."""
    _authorise(ctx)
    values = _values(parameters)
    if read_current(conn, "Patient", patient_id) is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    gate = gate_of(ctx)
    if not isinstance(gate, ConsentGate):
        gate = ConsentGate(None, settings)
    subject = RequestContext(requester=requester_from(values, patient_id),
                             interaction="operation", operation="$access-check")
    types = set(values.get("resourceType", []))
    per_resource = (values.get("detail") or [""])[0] == "resource"

    q = select(consent_fact.c.rid).where(or_(
        consent_fact.c.patient_id == patient_id,
        (consent_fact.c.res_type == "Patient") & (consent_fact.c.res_id == patient_id),
    )).order_by(consent_fact.c.rid)
    if types:
        q = q.where(consent_fact.c.res_type.in_(sorted(types)))
    resources = read_many_current(conn, list(conn.execute(q).scalars()))

    results: list[dict[str, Any]] = []
    by_type: dict[str, dict[str, Any]] = {}
    notices: set[str] = set()
    for res in resources:
        d = gate.decide(conn, subject, res.data)
        directive = d.rule.split("#")[0][len("consent."):] if (d.rule or "").startswith("consent.Consent/") else None
        if per_resource:
            part = [{"name": "resource", "valueReference": {"reference": res.reference}},
                    {"name": "resourceType", "valueCode": res.resource_type},
                    {"name": "decision", "valueCode": d.effect},
                    {"name": "rule", "valueString": d.rule or ""}]
            if d.reason:
                part.append({"name": "reason", "valueString": d.reason})
            if directive:
                part.append({"name": "directive", "valueReference": {"reference": directive}})
            results.append({"name": "result", "part": part})
            continue
        agg = by_type.setdefault(res.resource_type, {"effects": Counter(), "rules": Counter(),
                                                     "directives": set()})
        agg["effects"][d.effect] += 1
        agg["rules"][(d.effect, d.rule or "")] += 1
        if directive:
            agg["directives"].add(directive)
    for rtype in sorted(by_type):
        agg = by_type[rtype]
        effects: Counter = agg["effects"]
        decision = next(iter(effects)) if len(effects) == 1 else "partial"
        part: list[dict[str, Any]] = [
            {"name": "resourceType", "valueCode": rtype},
            {"name": "decision", "valueCode": decision},
            {"name": "count", "valueInteger": sum(effects.values())},
            {"name": "permitted", "valueInteger": effects.get("permit", 0)},
            {"name": "denied", "valueInteger": effects.get("deny", 0)},
        ]
        for (effect, rule), n in sorted(agg["rules"].items()):
            part.append({"name": "rule", "part": [
                {"name": "effect", "valueCode": effect},
                {"name": "id", "valueString": rule},
                {"name": "count", "valueInteger": n}]})
        for directive in sorted(agg["directives"]):
            part.append({"name": "directive", "valueReference": {"reference": directive}})
        results.append({"name": "result", "part": part})

    notices.update(gate.notices_for(conn, subject, patient_id))
    out: list[dict[str, Any]] = [
        {"name": "policyVersion", "valueString": gate.policy.version},
        {"name": "relationship", "valueBoolean": bool(getattr(subject, "relationship", False))},
    ]
    out += [{"name": "notice", "valueString": n} for n in sorted(notices)]
    out += results
    return orjson.dumps({"resourceType": "Parameters", "parameter": out})
