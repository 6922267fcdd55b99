"""Memoised value conversions (exchange.search.values) give what the plain ones give,
and long texts (e.g. from a hostile query) are never kept in the caches."""

from __future__ import annotations

from exchange.search import values as V

TEXTS = ["Zoë  O'Brien", "Ｆｕｌｌｗｉｄｔｈ", "", "  ", "Ĳssel", "x" * 300 + "É"]
DATES = ["2026", "2026-02", "2026-02-29", "2024-02-29", "2026-10-02T09:30:00+01:00", "2026-10-02T09:30:00.123Z",
         "2026-10-02T09:30", "not a date", " 2026-01-01 ", "2026-10-02T09:30:00" + "0" * 300]
REFS = [({"reference": "Patient/p1"}), ({"reference": "Patient/p1", "type": "Group"}),
        ({"reference": "https://x.org/fhir/Observation/o/_history/2"}), ({"reference": "urn:uuid:1"}),
        ({"reference": "Patient/" + "x" * 65}), ({"reference": "lower/x"}), "Organization/o",
        ({"reference": "Patient/" + "y" * 300}), ({"reference": "Encounter/e", "type": "Encounter"})]


def test_cached_and_plain_forms_agree() -> None:
    for text in TEXTS:
        assert V.normalise(text) == V._normalise(text) == V.normalise(text)
    for text in DATES:
        assert V.date_range(text) == V._date_range(text) == V.date_range(text)
    for ref in REFS:
        plain = V._reference_row(ref["reference"] if isinstance(ref, dict) else ref,
                                 str(ref["type"]) if isinstance(ref, dict) and ref.get("type") else None)
        assert V.references([ref]) == V.references([ref]) == ([plain] if plain else [])


def test_long_texts_are_not_cached() -> None:
    long_text = "é" * (V.CACHE_TEXT + 1)
    before = (V._normalise_cached.cache_info().currsize, V._date_range_cached.cache_info().currsize,
              V._reference_row_cached.cache_info().currsize)
    V.normalise(long_text)
    V.date_range(long_text)
    V.references([{"reference": "Patient/" + long_text}])
    after = (V._normalise_cached.cache_info().currsize, V._date_range_cached.cache_info().currsize,
             V._reference_row_cached.cache_info().currsize)
    assert after == before
