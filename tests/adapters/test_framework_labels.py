"""Step 5 of the adapter pipeline: the consent layer's code rules label legally
restricted data on the way in (issue 8 pipeline; issue 5 labels), whatever the source
sent; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from adapters.base import MappingContext, SourceRecord
from adapters.identity import stored_id
from adapters.pipeline import ingest_records
from exchange.repository.store import read_current
from tests.adapters.test_framework_pipeline import TinyAdapter, feed

SCT = "http://snomed.info/sct"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


class CodedAdapter(TinyAdapter):
    """TinyAdapter whose observations carry a SNOMED CT code."""

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        out = super().map(record, ctx)
        if record.kind == "obs":
            out[0]["code"] = {"coding": [{"system": SCT, "code": record.data["code"]}]}
        return out


def _security(engine, rid: str) -> set[tuple[str, str]]:  # noqa: ANN001
    with engine.connect() as conn:
        res = read_current(conn, "Observation", stored_id("LBL", rid, "Observation"))
    return {(s["system"], s["code"]) for s in (res.data.get("meta") or {}).get("security") or []}


def test_restricted_codes_are_labelled_on_ingest(engine, settings, tmp_path):  # noqa: ANN001
    path = feed(tmp_path, ["person|L1|family=Label;given=Lee;gender=male;dob=1970-01-01",
                           "obs|LO1|person=L1;code=105629000;value=1",  # chlamydial infection
                           "obs|LO2|person=L1;code=271649006;value=2"])  # blood pressure
    report = ingest_records(engine, settings, CodedAdapter(), CodedAdapter().read([path]), feed="labels",
                            source_system="LBL")
    assert report.created == 3, report
    restricted = _security(engine, "LO1")
    assert (CONF, "R") in restricted and ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "STD") in restricted
    assert (CONF, "R") not in _security(engine, "LO2")
