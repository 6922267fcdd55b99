"""Bad-input corpus through the real app with authorisation, consent and audit on
(issue 11, "Bad input"; FHIR R4 http.html, json.html, datatypes.html, search.html).

Every case in corpus/http_cases.json is sent with a valid system token. Each must be
answered with the expected 4xx and a well-formed OperationOutcome naming the problem
(issue.code and, where the case says so, issue.expression) -- never a 500 -- and must
change nothing in the database (versions and current rows counted before and after).
Cases marked ``xfail`` are known bugs in areas this suite does not own (see the report
in docs/security.md); they are strict, so a fix makes them fail loudly until unmarked.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

CORPUS = json.loads((Path(__file__).parent / "corpus" / "http_cases.json").read_text())["cases"]


def _nested(kind: str, depth: int) -> bytes:
    if kind == "nested-array":
        return b'{"resourceType":"Patient","x":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "nested-object":
        return b'{"resourceType":"Patient","x":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    if kind == "nested-extension":
        ext = b'{"url":"http://e.org/x","extension":[' * depth + b'{"url":"http://e.org/y","valueBoolean":true}'
        return b'{"resourceType":"Patient","extension":[' + ext + b"]}" * depth + b"]}"
    if kind == "nested-contained":
        return b'{"resourceType":"Patient","contained":[' * depth + b'{"resourceType":"Patient","id":"x"}' + b"]}" * depth
    if kind == "nested-transaction":
        ext = b'{"url":"http://e.org/x","extension":[' * depth + b'{"url":"http://e.org/y","valueBoolean":true}'
        return (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},'
                b'"resource":{"resourceType":"Patient","extension":[' + ext + b"]}" * depth + b"]}}]}")
    if kind == "nested-bundle":
        return (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},'
                b'"resource":{"resourceType":"Patient","x":' + b"[" * depth + b"]" * depth + b"}}]}")
    raise AssertionError(kind)


def _body(case: dict[str, Any]) -> bytes | None:
    if "body_hex" in case:
        return bytes.fromhex(case["body_hex"])
    gen = case.get("gen")
    if gen:
        kind, size = gen.split(":")
        if kind == "huge":
            return b'{"resourceType":"Patient","name":[{"family":"' + b"a" * int(size) + b'"}]}'
        if kind == "huge-bundle":
            entry = b'{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},'
            n = int(size) // len(entry) + 1
            return b'{"resourceType":"Bundle","type":"transaction","entry":[' + entry * n + b"{}]}"
        return _nested(kind, int(size))
    body = case.get("body")
    return None if body is None else body.encode()


def _params() -> list[Any]:
    out = []
    for case in CORPUS:
        everywhere = case.get("xfail") and not case.get("xfail_on")
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if everywhere else []
        out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


@pytest.fixture(scope="module")
def seeded(full_client, system_headers):  # noqa: ANN001, ANN201
    """One patient the update/patch/read cases aim at."""
    r = full_client.put("/fhir/Patient/hp1", headers={**system_headers, "content-type": "application/fhir+json"},
                        content=b'{"resourceType":"Patient","id":"hp1","name":[{"family":"Hardy"}]}')
    assert r.status_code in (200, 201), r.text
    return full_client


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_refused_precisely(seeded, system_headers, fingerprint, assert_outcome, db_url, request,  # noqa: ANN001
                                        case):
    if case.get("xfail_on") and db_url.startswith(case["xfail_on"]):
        request.applymarker(pytest.mark.xfail(strict=True, reason=case["xfail"]))
    headers: dict[str, Any] = {**system_headers, "content-type": "application/fhir+json"}
    for k, v in (case.get("headers") or {}).items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    before = fingerprint()
    r = seeded.request(case["method"], case["path"], headers=headers, content=_body(case))
    after = fingerprint()
    if case.get("batch"):
        assert r.status_code == 200, r.text[:500]
        entries = orjson.loads(r.content)["entry"]
        for e in entries:
            assert e["response"]["status"].startswith("4"), e
            assert_outcome(orjson.dumps(e["response"]["outcome"]))
    else:
        assert r.status_code in case["status"], f"{r.status_code}: {r.text[:500]}"
        oo = assert_outcome(r.content)
        assert r.headers["content-type"].startswith("application/fhir+json")
        if case.get("code"):
            codes = [i["code"] for i in oo["issue"]]
            assert case["code"] in codes, oo
        if case.get("expression"):
            exprs = [x for i in oo["issue"] for x in i.get("expression", [])]
            assert case["expression"] in exprs, oo
        assert all(i.get("diagnostics") for i in oo["issue"]), oo
    assert after == before, "a refused request changed the database"


def test_corpus_is_broad() -> None:
    """The corpus covers every family the issue lists (guards against it being trimmed)."""
    prefixes = {c["id"].split("-")[0] for c in CORPUS}
    assert {"json", "content", "body", "fhir", "patch", "id", "search", "cursor", "conditional"} <= prefixes
    assert len(CORPUS) >= 120


def test_refused_requests_are_still_audited(seeded, system_headers, full_engine) -> None:  # noqa: ANN001
    """A refused request that reached the pipeline leaves an AuditEvent with its failure
    outcome (the access log sees probing too)."""
    from sqlalchemy import func, select

    from exchange.audit.tables import audit_event
    from exchange.db.engine import read_tx

    with read_tx(full_engine) as conn:
        before = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
    r = seeded.get("/fhir/Patient?birthdate=notadate", headers=system_headers)
    assert r.status_code == 400
    with read_tx(full_engine) as conn:
        after = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
    assert after == before + 1
