"""Value extraction (exchange.search.values): implicit date ranges, time zones, Periods,
Timings, number precision, tokens of each data type, strings of names and addresses."""

from __future__ import annotations

from datetime import datetime

import pytest

from exchange.search import values as V


@pytest.mark.parametrize(("text", "low", "high"), [
    ("2024", datetime(2024, 1, 1), datetime(2025, 1, 1)),
    ("2024-02", datetime(2024, 2, 1), datetime(2024, 3, 1)),
    ("2024-12", datetime(2024, 12, 1), datetime(2025, 1, 1)),
    ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
    ("2024-01-01T10:00:00Z", datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 0, 1)),
    ("2024-01-01T10:00:00+02:00", datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 8, 0, 1)),
    ("2024-01-01T23:30:00-05:00", datetime(2024, 1, 2, 4, 30), datetime(2024, 1, 2, 4, 30, 1)),
    ("2024-01-01T10:00", datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 1)),
    ("2024-01-01T10:00:00.123Z", datetime(2024, 1, 1, 10, 0, 0, 123000), datetime(2024, 1, 1, 10, 0, 0, 124000)),
])
def test_date_ranges(text, low, high):
    assert V.date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13", "2024-02-30", "24-01-01", "2024-01-01T25:00:00Z"])
def test_invalid_dates(text):
    assert V.date_range(text) is None


def test_periods_and_timings():
    assert V.dates([{"start": "2024-01-01", "end": "2024-01-31"}]) == [
        (datetime(2024, 1, 1), datetime(2024, 2, 1))]
    assert V.dates([{"start": "2024-01-01"}]) == [(datetime(2024, 1, 1), V.MAX_DT)]
    assert V.dates([{"end": "2024"}]) == [(V.MIN_DT, datetime(2025, 1, 1))]
    timing = {"event": ["2024-03-01", "bad"], "repeat": {"boundsPeriod": {"start": "2024-04-01", "end": "2024-04-02"}}}
    assert V.dates([timing]) == [(datetime(2024, 3, 1), datetime(2024, 3, 2)),
                                 (datetime(2024, 4, 1), datetime(2024, 4, 3))]


def test_number_precision():
    assert V.number_range("100") == (100.0, 99.5, 100.5)
    assert V.number_range("1.50") == (1.5, 1.495, 1.505)
    assert V.number_range("1e2")[0] == 100.0
    with pytest.raises(ValueError):
        V.number_range("ten")


def test_tokens_per_type():
    assert V.tokens([True, "active"]) == [(None, "true", None, False), (None, "active", None, False)]
    cc = {"coding": [{"system": "s", "code": "c", "display": "Héart"}], "text": "Pulse"}
    assert V.tokens([cc]) == [("s", "c", "heart", False), (None, None, "pulse", False)]
    ident = {"system": "sys", "value": "v", "type": {"coding": [{"system": "ts", "code": "MR"}]}}
    assert V.tokens([ident]) == [("sys", "v", None, False), ("ts", "MR", "v", True)]
    assert V.tokens([{"system": "email", "value": "a@b"}]) == [(None, "a@b", None, False)]
    assert V.tokens([{"url": "http://ext", "valueCode": "x"}]) == [(None, "x", None, False)]


def test_strings_and_references_and_quantities():
    name = {"family": "Ng", "given": ["A", "B"], "prefix": ["Dr"]}
    assert V.strings([name]) == ["Ng", "A", "B", "Dr"]
    assert V.strings([{"line": ["1 Road"], "city": "Leeds", "postalCode": "LS1"}]) == ["1 Road", "Leeds", "LS1"]
    assert V.normalise("  Élodie  MÜLLER ") == "elodie muller"
    refs = V.references([{"reference": "Patient/1"}, {"reference": "http://x/fhir/Patient/2/_history/3"},
                         {"reference": "#contained"}, "http://canonical/Questionnaire/q|1.0",
                         {"reference": "urn:uuid:abc"}, {"identifier": {"value": "x"}}])
    assert refs == [("Patient", "1", None), ("Patient", "2", "http://x/fhir/Patient/2/_history/3"),
                    ("Questionnaire", "q", "http://canonical/Questionnaire/q|1.0"), (None, None, "urn:uuid:abc")]
    assert V.quantities([{"value": 5, "system": "u", "code": "mg"}, {"low": {"value": 1, "code": "a"}}, True]) == [
        (5.0, 5.0, "u", "mg"), (1.0, 1e300, None, "a")]
