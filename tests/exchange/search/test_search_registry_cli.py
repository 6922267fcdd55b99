"""The parameter registry (CapabilityStatement lists what works) and the reindex command."""

from __future__ import annotations

from exchange.db.engine import read_tx
from exchange.search.registry import (
    SERVED_TYPES,
    get_param,
    include_values,
    revinclude_values,
    supported_params,
)
from exchange.search.tables import search_token


def test_every_listed_parameter_is_served_by_the_engine(sx):
    """Each advertised parameter of every served type runs as a query without error,
    composites included (one probe value per component, joined by ``$``; that each
    composite also *matches* is test_search_composites_probe.py)."""
    probe = {"token": "x", "string": "x", "date": "2020", "reference": "Patient/x", "quantity": "1",
             "number": "1", "uri": "http://x"}
    composites = 0
    for rtype in SERVED_TYPES:
        params = supported_params(rtype)
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= {p["name"] for p in params}
        query = []
        for p in params:
            if p["type"] == "composite":
                sp = get_param(rtype, p["name"])
                assert sp is not None and sp.components.get(rtype), (rtype, p["name"])
                query.append((p["name"], "$".join(probe[c.type] for c in sp.components[rtype])))
                composites += 1
            else:
                query.append((p["name"], probe[p["type"]]))
        assert sx.fetch(rtype, [*query, ("_summary", "count")])["total"] == 0  # all ANDed, one query
        for name, value in query:  # and each alone, so one failing parameter is named
            sx.fetch(rtype, [(name, value), ("_summary", "count")])
    assert composites >= 9  # Observation's eight and DocumentReference's relationship


def test_patient_parameters_not_served_are_documented():
    """R4 defines Patient ``age``, ``birthOrderBoolean`` and ``part-agree``; the engine does
    not serve them (no FHIRPath expression, or an expression on another type), and
    docs/search.md says why. Serving one later must come with its doc change."""
    from pathlib import Path

    names = {p["name"] for p in supported_params("Patient")}
    unserved = {"age", "birthOrderBoolean", "part-agree"}
    assert not names & unserved
    doc = (Path(__file__).resolve().parents[3] / "docs" / "search.md").read_text()
    for name in unserved:
        assert f"`{name}`" in doc, name


def test_capability_values():
    assert "Observation:subject" in include_values("Observation")
    assert "Provenance:target" in revinclude_values("Observation")
    assert "Observation:subject" in revinclude_values("Patient")
    assert not {p["name"] for p in supported_params("Patient")} & {"_text", "_content", "_filter"}


def test_cli_reindex_rebuilds_rows(sx, capsys):
    from exchange.cli import main

    with read_tx(sx.engine) as conn:
        before = conn.execute(search_token.select().where(search_token.c.res_type == "Patient")).all()
    url = sx.engine.url.render_as_string(hide_password=False)
    assert main(["search", "reindex", "--type", "Patient", "--database", url]) == 0
    assert "reindexed" in capsys.readouterr().out
    with read_tx(sx.engine) as conn:
        after = conn.execute(search_token.select().where(search_token.c.res_type == "Patient")).all()
    assert sorted(map(tuple, after)) == sorted(map(tuple, before)) and before


def test_resource_with_thousands_of_index_rows(sx):
    from exchange.db.engine import write_tx

    big = {"resourceType": "List", "id": "big-list", "status": "current", "mode": "working",
           "subject": {"reference": "Patient/p1"},
           "entry": [{"item": {"reference": f"Observation/x{i}"}} for i in range(2500)]}
    with write_tx(sx.engine) as conn:
        sx.put(conn, big)
    assert sx.find("List", "item=Observation/x2499") == {"big-list"}
    assert sx.find("List", "item=Observation/x0&subject=Patient/p1") == {"big-list"}
    with write_tx(sx.engine) as conn:
        sx.put(conn, {**big, "entry": big["entry"][:10]})
    assert sx.find("List", "item=Observation/x2499") == set()
    assert sx.find("List", "item=Observation/x9") == {"big-list"}


def test_oversized_and_malformed_values_are_indexed_safely(sx):
    from exchange.db.engine import write_tx

    long_code = "é" * 3000
    odd = {"resourceType": "Observation", "id": "odd", "status": "final",
           "code": {"coding": [{"system": "http://x/" + "s" * 3000, "code": long_code}], "text": "t" * 5000},
           "subject": {"reference": "Patient/" + "x" * 200}, "performer": [{"reference": 42}],
           "effectiveDateTime": "not-a-date", "valueQuantity": {"value": "high"},
           "note": [{"text": "n" * 10000}], "identifier": [{"value": "v" * 4000}]}
    with write_tx(sx.engine) as conn:
        sx.put(conn, odd)
    assert sx.find("Observation", [("code", long_code)]) == {"odd"}
    assert sx.find("Observation", [("identifier", "v" * 4000)]) == {"odd"}
    assert sx.find("Observation", "_id=odd&subject:missing=true") == {"odd"}


def test_phonetic_is_not_claimed(sx):
    import pytest

    from exchange.outcome import FhirError

    assert "phonetic" not in {p["name"] for p in supported_params("Patient")}
    with pytest.raises(FhirError):
        sx.find("Patient", "phonetic=smyth")
