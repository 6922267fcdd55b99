"""What the community adapter's EPaCCS register mapping produces is understood (issue 6)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from adapters.base import MappingContext
from adapters.community.map_eol import map_register
from exchange.operations.eol_classify import attorney_of, classify
from exchange.operations.eol_current import assess
from exchange.operations.eol_model import CANCELLED, CURRENT, SUPERSEDED

SAMPLE = Path(__file__).parents[3] / "adapters" / "community" / "samples" / "eol_register.csv"


def mapped(patient: str) -> list[dict]:
    out: list[dict] = []
    with SAMPLE.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["PATIENT_ID"] == patient:
                out.extend(map_register(row, MappingContext(source_system="RW4", feed="eol_register.csv")))
    return out


def test_every_mapped_register_resource_is_recognised() -> None:
    with SAMPLE.open(newline="") as fh:
        patients = {row["PATIENT_ID"] for row in csv.DictReader(fh)}
    for pid in patients:
        for res in mapped(pid):
            assert classify(res) is not None or attorney_of(res) is not None, res


def test_register_row_becomes_current_decisions_with_attorney() -> None:
    resources = mapped("S1C-40000")
    items = [p for p in map(classify, resources) if p]
    a = assess(items, [x for x in map(attorney_of, resources) if x], now=datetime(2026, 11, 1, tzinfo=UTC))
    cpr = a.of_kind("cpr")
    assert [(p.state, p.cpr) for p in cpr] == [(CURRENT, "not-for-cpr")]
    assert cpr[0].author_display == "Dr P Shah (GP)" and cpr[0].review and cpr[0].review.text == "2027-04-01"
    assert [at.name for at in a.attorneys] == ["Karen Whitfield"]
    assert {p.kind for p in a.current()} >= {"cpr", "respect", "lpa", "place_of_care", "place_of_death"}


def test_cancelled_register_entries_are_not_current() -> None:
    items = [p for p in map(classify, mapped("S1C-40003")) if p]
    a = assess(items, now=datetime(2026, 11, 1, tzinfo=UTC))
    states = {(p.cpr, p.state) for p in a.of_kind("cpr")}
    assert ("not-for-cpr", CANCELLED) in states or ("not-for-cpr", SUPERSEDED) in states
    assert all(p.cpr != "not-for-cpr" for p in a.current("cpr"))
