"""Provenance for every change an ingest makes (FHIR R4 provenance.html).

One Provenance per written batch and activity: ``target`` lists every resource version
the batch changed (``Type/id/_history/n``), ``activity`` is a v3-DataOperation code
(CREATE, UPDATE or DELETE), ``agent[0]`` is the source system (who = an identifier in
:data:`SOURCE_SYSTEM_URI`, type ``author``), ``agent[1]`` the adapter software and its
version (type ``assembler``), ``entity`` the feed (role ``source``), ``recorded`` the
time of writing. Batches in which nothing changed get no Provenance.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

SOURCE_SYSTEM_URI = "https://exchange.example.nhs.uk/source-system"
FEED_URI = "https://exchange.example.nhs.uk/feed"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACTIVITY_DISPLAY = {"CREATE": "create", "UPDATE": "revise", "DELETE": "delete"}


def meta_source(source_system: str, adapter_name: str) -> str:
    """The ``meta.source`` URI of everything an adapter writes for a source system."""
    from urllib.parse import quote

    return f"urn:exchange:source:{quote(source_system, safe='')}#{quote(adapter_name, safe='')}"


def source_tag(source_system: str, display: str | None = None) -> dict[str, str]:
    """The ``meta.tag`` naming the source system of a resource."""
    tag = {"system": SOURCE_SYSTEM_URI, "code": source_system}
    if display:
        tag["display"] = display
    return tag


def build_provenance(
    *,
    targets: list[str],
    activity: str,
    source_system: str,
    adapter_name: str,
    adapter_version: str,
    feed: str,
    recorded: str,
    note: str | None = None,
) -> dict[str, Any]:
    """A Provenance resource (with a fresh id) for ``targets`` changed by one batch."""
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": uuid.uuid4().hex,
        "meta": {
            "source": meta_source(source_system, adapter_name),
            "tag": [source_tag(source_system)],
        },
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "activity": {
            "coding": [
                {"system": DATA_OPERATION, "code": activity, "display": ACTIVITY_DISPLAY.get(activity, activity.lower())}
            ]
        },
        "agent": [
            {
                "type": {"coding": [{"system": AGENT_TYPE, "code": "author", "display": "Author"}]},
                "who": {
                    "identifier": {"system": SOURCE_SYSTEM_URI, "value": source_system},
                    "display": f"source system {source_system}",
                },
            },
            {
                "type": {"coding": [{"system": AGENT_TYPE, "code": "assembler", "display": "Assembler"}]},
                "who": {"display": f"exchange adapter {adapter_name} {adapter_version}"},
            },
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": FEED_URI, "value": feed[:1000]},
                    "display": f"{adapter_name} feed {feed}"[:1000],
                },
            }
        ],
    }
    if note:
        prov["activity"]["text"] = note
    return prov


def recorded_now(when: datetime) -> str:
    from exchange.repository.store import fhir_instant

    return fhir_instant(when)
