"""Resolving Consent actor references to identifiers a requester carries.

A Consent provision's actor (FHIR R4 consent.html, ``provision.actor.reference``) may
name an Organization, Practitioner or PractitionerRole by literal reference or by
identifier. Requesters are identified by ODS code (organisation) and SDS user id
(practitioner), so references are resolved to those: an Organization resource to its
ODS identifier, a Practitioner to its id plus SDS user ids, a PractitionerRole to its
practitioner's. An unresolvable reference matches no requester (fails closed for
permits, and a deny that names nobody reachable applies to nobody).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from consent.directives import Actor
from consent.facts import ODS

SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"


def _idents(resource: dict[str, Any], system: str) -> set[str]:
    return {str(i["value"]) for i in resource.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == system and i.get("value")}


def make_resolver(conn: Connection) -> Callable[[Any], Actor]:
    """A cached ``resolve(reference_dict) -> Actor`` reading referenced resources."""
    from exchange.repository.store import read_current

    cache: dict[str, dict[str, Any] | None] = {}

    def load(rtype: str, rid: str) -> dict[str, Any] | None:
        key = f"{rtype}/{rid}"
        if key not in cache:
            got = read_current(conn, rtype, rid)
            cache[key] = got.data if got is not None and not got.deleted else None
        return cache[key]

    def resolve(ref: Any) -> Actor:
        actor = Actor()
        if not isinstance(ref, dict):
            return actor
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            if ident.get("system") == ODS:
                actor.org_ods.add(str(ident["value"]))
            elif ident.get("system") == SDS_USER:
                actor.practitioners.add(str(ident["value"]))
        literal = ref.get("reference")
        if not isinstance(literal, str) or "/" not in literal:
            return actor
        rtype, rid = literal.split("/_history")[0].split("/")[-2:]
        if rtype == "Organization":
            org = load(rtype, rid)
            if org is not None:
                actor.org_ods |= _idents(org, ODS)
        elif rtype == "Practitioner":
            actor.practitioners.add(rid)
            prac = load(rtype, rid)
            if prac is not None:
                actor.practitioners |= _idents(prac, SDS_USER)
        elif rtype == "PractitionerRole":
            role = load(rtype, rid)
            if role is not None:
                inner = resolve(role.get("practitioner"))
                actor.practitioners |= inner.practitioners
        return actor

    return resolve
