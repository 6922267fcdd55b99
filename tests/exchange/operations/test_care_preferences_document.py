"""The care-preferences document and CDS cards are valid FHIR R4 / CDS Hooks (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

from fhir.resources.R4B.bundle import Bundle

from exchange.cds.cards import build_cards
from exchange.operations.eol_classify import attorney_of, classify
from exchange.operations.eol_current import assess
from exchange.operations.eol_demo import demo_resources
from exchange.operations.eol_document import headline, render_document

NOW = datetime(2026, 11, 30, 4, tzinfo=UTC)


def assessed():  # noqa: ANN201
    res = demo_resources("p1", today=date(2026, 11, 30))
    prefs = [p for p in map(classify, res) if p]
    atts = [a for a in map(attorney_of, res) if a]
    return res, assess(prefs, atts, now=NOW)


def test_document_validates_as_an_r4_bundle() -> None:
    res, a = assessed()
    doc = render_document(a, patient={"resourceType": "Patient", "id": "p1"}, resources=res,
                          base_url="http://x/fhir", now=NOW)
    bundle = Bundle.model_validate(doc)
    assert bundle.type == "document" and bundle.entry[0].resource.get_resource_type() == "Composition"
    for entry in doc["entry"]:
        div = (entry["resource"].get("text") or {}).get("div")
        if div:
            ET.fromstring(div)  # well-formed XHTML
    for section in doc["entry"][0]["resource"]["section"]:
        ET.fromstring(section["text"]["div"])


def test_headline_names_the_conflict_first() -> None:
    _, a = assessed()
    assert headline(a).startswith("CONFLICTING")


def test_narrative_escapes_source_text() -> None:
    res, _ = assessed()
    evil = next(r for r in res if r["id"] == "p1-h-forcpr")
    evil["author"] = {"display": "<script>alert(1)</script>"}
    prefs = [p for p in map(classify, res) if p]
    a = assess(prefs, now=NOW)
    doc = render_document(a, patient={"resourceType": "Patient", "id": "p1"}, resources=res,
                          base_url="http://x/fhir", now=NOW)
    sec = doc["entry"][0]["resource"]["section"][0]
    assert "<script>" not in sec["text"]["div"] and "&lt;script&gt;" in sec["text"]["div"]


def test_cards_follow_cds_hooks_card_rules() -> None:
    _, a = assessed()
    cards = build_cards(a, "http://x/fhir/Patient/p1/$care-preferences")
    indicators = [c["indicator"] for c in cards]
    assert indicators[0] == "critical"
    assert indicators == sorted(indicators, key=["critical", "warning", "info"].index)
    assert {"critical", "warning", "info"} <= set(indicators)
    for c in cards:
        assert set(c) >= {"uuid", "summary", "indicator", "detail", "source", "links"}
        assert len(c["summary"]) < 140 and c["source"]["label"]
