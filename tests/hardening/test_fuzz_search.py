"""Focused property-based fuzzing of search values and modifiers (issue 11, "Bad input":
hostile search values; FHIR R4 search.html#ptypes, #modifiers, #prefix, #chaining,
#has).

The OpenAPI fuzz spreads its examples over 336 operations; this one aims Hypothesis at
the search parser: one search parameter of every type (string, token, date, reference,
quantity, number, uri, chained, reverse-chained, _has, _sort, _include), any modifier,
any comparator prefix and values drawn from SQL metacharacters, LIKE wildcards,
escapes, pipes, commas, huge numbers, unicode and control characters. Sent with a
clinician's token (so the consent gate narrows every query). Properties: never a 5xx;
a 4xx is a valid OperationOutcome; a 200 is a searchset Bundle; nothing changes.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("EXCHANGE_FUZZ_SEARCH_EXAMPLES", "150"))
PARAMS = [
    ("Patient", "name"), ("Patient", "family"), ("Patient", "identifier"), ("Patient", "birthdate"),
    ("Patient", "gender"), ("Patient", "general-practitioner"), ("Patient", "organization.name"),
    ("Patient", "_has:Observation:patient:code"), ("Patient", "_id"), ("Patient", "_lastUpdated"),
    ("Observation", "code"), ("Observation", "value-quantity"), ("Observation", "date"),
    ("Observation", "subject"), ("Observation", "patient"), ("Observation", "subject:Patient.name"),
    ("Observation", "combo-code-value-quantity"), ("Observation", "_tag"), ("Observation", "_security"),
    ("Observation", "_source"), ("Observation", "_profile"), ("RiskAssessment", "probability"),
    ("Encounter", "length"), ("DiagnosticReport", "result.code"), ("Flag", "patient"),
    ("Consent", "patient"), ("Condition", "onset-date"), ("MedicationRequest", "intent"),
]
CONTROL = ["_sort", "_include", "_revinclude", "_count", "_total", "_summary", "_elements"]
MODIFIERS = ["", ":exact", ":contains", ":missing", ":not", ":text", ":above", ":below", ":in", ":not-in",
             ":of-type", ":identifier", ":Patient", ":iterate", ":bogus", ":"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz"]
ATOMS = ["'", '"', ";", "--", "/*", "*/", "%", "_", "\\", "|", ",", "$", "?", "&", "=", ":", ".", "..", "/",
         "1e999", "-1e999", "NaN", "Infinity", "99999999999999999999999", "-0", "0.0000000000000000001",
         "2020-02-30", "0000", "9999-12-31T23:59:59+14:00", "T", "Patient/", "http://", "urn:uuid:",
         "OR 1=1", "DROP TABLE resource_current", "\u202e", "\ufeff", "\U0001f600", "é", "\x7f", "\x00", "\x1b",
         "\t", "\n", " "]
VALUES = st.one_of(
    st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6).map("".join),
    st.text(max_size=40),
    st.tuples(st.sampled_from(PREFIXES), st.text(alphabet="0123456789-T:.+Z", max_size=30)).map("".join),
    st.tuples(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10)).map("|".join),
    st.lists(st.text(max_size=8), min_size=2, max_size=30).map(",".join),
)


def _check(r: Any) -> None:
    assert r.status_code < 500, f"{r.status_code} {r.request.url}: {r.text[:300]}"
    body = orjson.loads(r.content)
    if r.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", body
        OperationOutcome.model_validate(body)
    else:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body


def _fuzz_get(client: Any, headers: dict[str, str], examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(target=st.sampled_from(PARAMS), modifier=st.sampled_from(MODIFIERS), value=VALUES,
           control=st.none() | st.tuples(st.sampled_from(CONTROL), VALUES))
    def run(target: tuple[str, str], modifier: str, value: str, control: tuple[str, str] | None) -> None:
        rtype, name = target
        params = [(name + modifier, value)] + ([control] if control else [])
        _check(client.get(f"/fhir/{rtype}", params=params, headers=headers))

    run()


def test_search_values_never_fail(full_client, token_for, fingerprint: Callable[[], Any]) -> None:  # noqa: ANN001
    headers = token_for(organization="A81001", scope="user/*.rs", client_id="fuzz-search-clinician")
    before = fingerprint()
    _fuzz_get(full_client, headers, EXAMPLES)
    assert fingerprint() == before


@pytest.mark.slow
def test_search_values_never_fail_long(full_client, token_for, fingerprint: Callable[[], Any]) -> None:  # noqa: ANN001
    """The long run (about 20 s per database; ``pytest -m slow``)."""
    headers = token_for(organization="A81001", scope="user/*.rs", client_id="fuzz-search-clinician")
    before = fingerprint()
    _fuzz_get(full_client, headers, EXAMPLES * 10)
    assert fingerprint() == before


def test_search_values_never_fail_in_post_search_and_batch(full_client, token_for) -> None:  # noqa: ANN001
    """The same parser reached through POST _search forms and batch entry URLs."""
    headers = token_for(organization="A81001", scope="user/*.rs", client_id="fuzz-search-clinician")

    @settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(target=st.sampled_from(PARAMS), modifier=st.sampled_from(MODIFIERS), value=VALUES)
    def run(target: tuple[str, str], modifier: str, value: str) -> None:
        from urllib.parse import urlencode

        rtype, name = target
        query = urlencode([(name + modifier, value)])
        _check(full_client.post(f"/fhir/{rtype}/_search", content=query.encode(),
                                headers={**headers, "content-type": "application/x-www-form-urlencoded"}))
        batch = {"resourceType": "Bundle", "type": "batch",
                 "entry": [{"request": {"method": "GET", "url": f"{rtype}?{query}"}}]}
        r = full_client.post("/fhir", content=orjson.dumps(batch),
                             headers={**headers, "content-type": "application/fhir+json"})
        assert r.status_code < 500, r.text[:300]
        if r.status_code == 200:
            status = r.json()["entry"][0]["response"]["status"]
            assert not status.startswith("5"), r.text[:300]

    run()
