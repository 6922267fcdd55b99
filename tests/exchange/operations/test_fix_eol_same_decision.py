"""One CPR decision recorded twice by one source is one decision, not a supersession (issue 6).

GP systems record a DNACPR decision as an Observation and the gp-connect adapter also
emits a Flag for it (same source, same code, same decision date). Both must appear as
ONE current decision (the Flag, naming the Observation), never one "superseded" copy.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import flag, observation  # noqa: E402

from adapters.gp_connect import GpConnectAdapter  # noqa: E402
from adapters.identity import shared_patient_id, stored_id  # noqa: E402
from adapters.pipeline import ingest  # noqa: E402
from exchange.operations.care_preferences import care_preferences  # noqa: E402
from exchange.operations.eol_classify import classify  # noqa: E402
from exchange.operations.eol_current import assess  # noqa: E402
from exchange.operations.eol_model import CURRENT, SUPERSEDED  # noqa: E402
from exchange.pipeline.context import RequestContext, Requester  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[3] / "adapters" / "gp_connect" / "samples" / "structured-record-whitfield.json"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
STATE = "https://exchange.example.nhs.uk/fhir/StructureDefinition/care-preference-state"


def run(*resources):  # noqa: ANN002, ANN201
    return assess([p for p in map(classify, resources) if p], now=NOW)


def test_gp_connect_dnacpr_is_one_current_decision(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, GpConnectAdapter(), [SAMPLE], source_system="N82001")
    assert report.rejected == 0
    obs_id = stored_id("N82001", "O-9002", "Observation")
    flag_id = stored_id("N82001", "O-9002", "Flag")
    ctx = RequestContext(requester=Requester(kind="system", client_id="eol-test", scopes=frozenset({"system/*.*"})),
                         method="GET", interaction="operation")
    with engine.connect() as conn:
        body = care_preferences(conn, ctx, settings, shared_patient_id("9990000425"), "http://t/fhir", now=NOW)
    bundle = orjson.loads(body)
    composition = bundle["entry"][0]["resource"]
    cpr = next(s for s in composition["section"] if s["code"]["coding"][0]["code"] == "resuscitation-status")
    states = [next(x["valueCode"] for x in e["extension"] if x["url"] == STATE) for e in cpr["entry"]]
    assert states == ["current"], cpr["entry"]
    assert cpr["entry"][0]["reference"] == f"http://t/fhir/Flag/{flag_id}"
    assert f"Observation/{obs_id}" in cpr["text"]["div"]  # the other record of the same decision is named
    assert "Superseded" not in cpr["text"]["div"]
    conflicts = next(s for s in composition["section"] if s["code"]["coding"][0]["code"] == "conflicts-and-warnings")
    assert "entry" not in conflicts
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert f"http://t/fhir/Observation/{obs_id}" in urls and f"http://t/fhir/Flag/{flag_id}" in urls


def test_same_source_code_and_date_collapse_preferring_the_flag() -> None:
    obs = observation("o1", "304253006", when="2025-03-01T10:00:00+00:00", performer=None)
    fl = flag("f1", "304253006", start="2025-03-01", author="Dr Patel")
    a = run(obs, fl)
    (only,) = a.of_kind("cpr")
    assert (only.reference, only.state) == ("Flag/f1", CURRENT)
    assert any("Observation/o1" in d for d in only.details)
    again = assess(a.items, now=NOW)  # assessing again adds nothing twice
    assert sum("Observation/o1" in d for d in again.of_kind("cpr")[0].details) == 1


def test_kept_record_borrows_what_only_the_other_recorded() -> None:
    obs = observation("o2", "304253006", when="2025-03-01", performer="Dr Okafor")
    fl = flag("f2", "304253006", start="2025-03-01", author=None)
    (only,) = run(obs, fl).of_kind("cpr")
    assert only.reference == "Flag/f2" and only.author_display == "Dr Okafor"


def test_different_date_code_source_or_status_stay_separate() -> None:
    base = flag("f3", "304253006", start="2025-03-01")
    later = observation("o3", "304253006", when="2025-04-01")
    a = run(base, later)
    assert {(p.reference, p.state) for p in a.of_kind("cpr")} == {("Observation/o3", CURRENT), ("Flag/f3", SUPERSEDED)}
    other_code = observation("o4", "450476008", when="2025-03-01")
    assert len(run(base, other_code).of_kind("cpr")) == 2
    other_source = observation("o5", "304253006", when="2025-03-01", source="Hospital")
    assert {p.state for p in run(base, other_source).of_kind("cpr")} == {CURRENT}
    assert len(run(base, other_source).of_kind("cpr")) == 2
    cancelled = observation("o6", "304253006", when="2025-03-01", status="cancelled")
    assert len(run(base, cancelled).of_kind("cpr")) == 2
