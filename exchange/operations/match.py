"""``Patient/$match`` (FHIR R4 patient-operation-match.html) with the ingest matcher's rule.

Input: a Parameters resource with ``resource`` (a Patient), optional ``onlyCertainMatches``
(boolean) and ``count`` (integer). Output: a ``searchset`` Bundle of candidate Patients,
best first, each entry with ``search.mode = match``, ``search.score`` and the
``match-grade`` extension (http://hl7.org/fhir/StructureDefinition/match-grade:
certain / probable / possible / certainly-not).

Grades come from :func:`adapters.identity.grade`, the same rule identity matching uses
on ingest: the same verified NHS number is *certain*; without one, exact family name,
first given name, birth date, gender and postcode are *certain* only when exactly one
candidate with a verified NHS number matches that way (otherwise *probable*). Candidates
are found through the search index (NHS number identifier, birth date, family name) so
Patients created through the API are found too; Patients replaced by a merge are left
out (their survivor is a candidate). Every returned Patient passes the disclosure choke
point (:func:`exchange.pipeline.disclosure.release`).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select, union

from adapters.identity import NHS_SYSTEM, grade, normalise_nhs_number, verified_nhs_number
from exchange.db.tables import resource_current as rc
from exchange.outcome import Invalid
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import release
from exchange.repository.store import read_many_current
from exchange.search.tables import search_date, search_string, search_token
from exchange.search.values import date_range, normalise
from exchange.settings import Settings

MATCH_GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"
MAX_CANDIDATES = 1000
_ORDER = {"certain": 0, "probable": 1, "possible": 2, "certainly-not": 3}


def parse_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], bool, int | None]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise Invalid("Patient/$match takes a Parameters resource", code="structure", expression="Parameters")
    patient, only_certain, count = None, False, None
    for p in parameters.get("parameter") or []:
        name = p.get("name")
        if name == "resource":
            patient = p.get("resource")
        elif name == "onlyCertainMatches":
            if not isinstance(p.get("valueBoolean"), bool):
                raise Invalid("onlyCertainMatches must be a valueBoolean", expression="Parameters.parameter")
            only_certain = p["valueBoolean"]
        elif name == "count":
            if not isinstance(p.get("valueInteger"), int) or p["valueInteger"] < 1:
                raise Invalid("count must be a positive valueInteger", expression="Parameters.parameter")
            count = p["valueInteger"]
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise Invalid("the 'resource' parameter must hold a Patient", code="required",
                      expression="Parameters.parameter.resource")
    return patient, only_certain, count


def _candidate_rids(conn: Connection, patient: dict[str, Any]) -> list[int]:
    queries = []
    for ident in patient.get("identifier") or []:
        digits = normalise_nhs_number(ident.get("value")) if ident.get("system") == NHS_SYSTEM else None
        if digits:
            queries.append(select(search_token.c.rid).where(
                search_token.c.res_type == "Patient", search_token.c.param == "identifier",
                search_token.c.system == NHS_SYSTEM, search_token.c.code.in_([digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}"])))
    rng = date_range(str(patient["birthDate"])) if patient.get("birthDate") else None
    if rng is not None:
        queries.append(select(search_date.c.rid).where(
            search_date.c.res_type == "Patient", search_date.c.param == "birthdate",
            search_date.c.low == rng[0], search_date.c.high == rng[1]))
    else:
        families = [n.get("family") for n in patient.get("name") or [] if isinstance(n, dict) and n.get("family")]
        if families:
            queries.append(select(search_string.c.rid).where(
                search_string.c.res_type == "Patient", search_string.c.param == "family",
                search_string.c.norm == normalise(families[0])))
    if not queries:
        raise Invalid("$match needs an NHS number, a birth date or a family name to search on", code="required",
                      expression="Parameters.parameter.resource")
    sub = union(*queries).subquery()
    q = (select(rc.c.rid).where(rc.c.rid.in_(select(sub.c.rid)), rc.c.res_type == "Patient",
                                rc.c.deleted.is_(False)).order_by(rc.c.rid).limit(MAX_CANDIDATES))
    return list(conn.execute(q).scalars())


def _replaced(data: dict[str, Any]) -> bool:
    return any(link.get("type") == "replaced-by" for link in data.get("link") or [])


def match(conn: Connection, ctx: RequestContext, settings: Settings, parameters: dict[str, Any], base_url: str) -> bytes:
    """Run ``Patient/$match``; returns the searchset Bundle as JSON bytes."""
    query, only_certain, count = parse_parameters(parameters)
    ctx.operation = "$match"
    stored = [s for s in read_many_current(conn, _candidate_rids(conn, query)) if not _replaced(s.data)]
    # Consent first: a candidate the requester may not see must change nothing -- not the
    # count's places, not another candidate's grade (a hidden namesake downgrading a
    # "certain" match would reveal that it exists). Grades are among visible records.
    visible = release(conn, ctx, stored)
    graded = [(s, g) for s in visible if (g := grade(query, s.data)) is not None]
    demo_certain = [s for s, g in graded if g[0] == "certain" and not verified_nhs_number(query)]
    unique = len(demo_certain) == 1 and verified_nhs_number(demo_certain[0].data) is not None
    downgraded = {s.rid for s in demo_certain} if not unique else set()
    results = []
    for s, (g, score) in graded:
        if s.rid in downgraded:
            g, score = "probable", 0.85
        results.append((s, g, score))
    results.sort(key=lambda r: (_ORDER[r[1]], -r[2], r[0].id))
    if only_certain:
        results = [r for r in results if r[1] == "certain"]
    else:
        results = [r for r in results if r[1] != "certainly-not"]
    if count is not None:
        results = results[:count]
    # the access log lists what was returned, not every visible candidate considered
    kept = {s.rid for s, _g, _score in results}
    dropped = {(s.resource_type, s.id) for s in visible if s.rid not in kept}
    ctx.released = [r for r in ctx.released if (r.resource_type, r.resource_id) not in dropped]
    base = base_url.rstrip("/")
    entries = []
    for s, g, score in results:
        entries.append({
            "fullUrl": f"{base}/Patient/{s.id}",
            "resource": orjson.Fragment(s.content),
            "search": {"extension": [{"url": MATCH_GRADE_URL, "valueCode": g}], "mode": "match", "score": score},
        })
    # the total counts what the requester can see (withheld candidates are not hinted at)
    return orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})
