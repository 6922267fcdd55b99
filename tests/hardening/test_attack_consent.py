"""Consent probing against a twin database (issue 11, "Attacks on ... consent";
docs/consent-policy.md; FHIR R4 search.html, http.html).

Two real apps (authorisation, consent, audit on) hold the same world -- patients, a
hospital care relationship, a patient objection, visible observations, a report that
points at an observation -- except that the *primary* also holds resources hidden from
the hospital clinician: a legally restricted observation (sexual-health code) of a
patient the hospital treats, and an observation of a patient who objected to sharing.
Every probe a hostile clinician could use to learn of their existence -- conditional
create and update, ``_has``, chained search, ``_total``, ``_summary=count``, history,
vread, paging (including cursor tampering and a cursor reused by another requester),
``_include``/``_revinclude``, ``$everything``, batch entries, update, patch and delete
of the hidden id -- must get exactly the answer the twin gives, where the resources
never existed (volatile values normalised: Bundle ids, lastUpdated, server-assigned
ids). The single-database leak matrices in tests/consent/test_consent_leaks*.py (every
search path x every rule, with and without the hidden resource) are not repeated.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
IDS = "https://example.org/probe-id"
HOSP, GP = "PH001", "PG001"
SENSITIVE = "105629000"  # a legally restricted (sexual-health) code, as in tests/consent
JSON = {"content-type": "application/fhir+json"}
HIDDEN = ("hid-restricted", "hid-objection")


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def _obs(oid: str, pid: str, author: str = GP, extra: str | None = None, day: int = -1) -> dict[str, Any]:
    codings = [{"system": SCT, "code": "271649006"}] + ([{"system": SCT, "code": extra}] if extra else [])
    return {"resourceType": "Observation", "id": oid, "status": "final", "meta": {"tag": [{"system": SRC, "code": author}]},
            "identifier": [{"system": IDS, "value": oid}], "code": {"coding": codings},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _day(day)}


def _world() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": "porg-gp",
                                  "identifier": [{"system": ODS, "value": GP}]}]
    for pid in ("pr1", "pr2"):
        out.append({"resourceType": "Patient", "id": pid, "name": [{"family": "Probe"}],
                    "generalPractitioner": [{"reference": "Organization/porg-gp"}]})
        out.append({"resourceType": "Encounter", "id": f"penc-{pid}", "status": "in-progress", "class": {"code": "IMP"},
                    "subject": {"reference": f"Patient/{pid}"},
                    "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}, "period": {"start": _day(-2)}})
        for i in range(3):
            out.append(_obs(f"pvis-{pid}-{i}", pid, day=-1 - i))
    out.append({"resourceType": "Consent", "id": "pc2", "status": "active", "scope": {"coding": [{"code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": "Patient/pr2"}, "provision": {"type": "deny"}})
    out.append({"resourceType": "DiagnosticReport", "id": "prep1", "status": "final", "code": {"text": "screen"},
                "subject": {"reference": "Patient/pr1"}, "result": [{"reference": "Observation/hid-restricted"}]})
    return out


def _hidden() -> list[dict[str, Any]]:
    return [_obs("hid-restricted", "pr1", author="PS001", extra=SENSITIVE, day=-2), _obs("hid-objection", "pr2", day=-2)]


def _put_all(client: TestClient, headers: dict[str, str], resources: list[dict[str, Any]]) -> None:
    for res in resources:
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", headers={**headers, **JSON}, content=orjson.dumps(res))
        assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def twins(full_client: TestClient, twin_client: TestClient, full_engine: Engine, twin_engine: Engine,
          full_settings: Settings) -> dict[str, Any]:
    def tokens(engine: Engine, **kw: Any) -> dict[str, str]:
        return bearer(quick_token(engine, full_settings, **kw))

    system = {"kind": "system", "scope": "system/*.cruds", "practitioner": None, "role": None, "purpose": None,
              "client_id": "probe-system"}
    _put_all(full_client, tokens(full_engine, **system), _world())
    _put_all(twin_client, tokens(twin_engine, **system), _world())
    _put_all(full_client, tokens(full_engine, **system), _hidden())  # only the primary knows them
    clinician = {"organization": HOSP, "scope": "user/*.cruds", "client_id": "probe-clinician"}
    other = {"organization": HOSP, "scope": "user/*.cruds", "client_id": "probe-other", "practitioner": "555000111222"}
    return {"a": full_client, "b": twin_client,
            "ha": tokens(full_engine, **clinician), "hb": tokens(twin_engine, **clinician),
            "oa": tokens(full_engine, **other), "ob": tokens(twin_engine, **other)}


_CURSOR = re.compile(r"_getpages=[A-Za-z0-9_\-.%]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _norm(node: Any) -> Any:
    """Drop what legitimately differs between two databases: timestamps, Bundle ids,
    server-assigned ids, cursor bytes (keyset values), ETag dates."""
    if isinstance(node, dict):
        return {k: _norm(v) for k, v in node.items() if k not in ("lastUpdated", "lastModified")
                and not (k == "id" and node.get("resourceType") in ("Bundle", "OperationOutcome"))}
    if isinstance(node, list):
        return [_norm(v) for v in node]
    if isinstance(node, str):
        return _UUID.sub("<uuid>", _CURSOR.sub("_getpages=<cursor>", node))
    return node


def _answer(r) -> tuple[int, Any]:  # noqa: ANN001
    body = orjson.loads(r.content) if r.content else None
    return r.status_code, _norm(body)


def _both(t: dict[str, Any], method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
          who: str = "h") -> tuple[tuple[int, Any], tuple[int, Any]]:
    extra = headers or {}
    content = None if body is None else orjson.dumps(body)
    ra = t["a"].request(method, path, content=content, headers={**t[f"{who}a"], **JSON, **extra})
    rb = t["b"].request(method, path, content=content, headers={**t[f"{who}b"], **JSON, **extra})
    assert ra.status_code < 500 and rb.status_code < 500, (ra.text[:300], rb.text[:300])
    return _answer(ra), _answer(rb)


READ_PROBES = [
    "/fhir/Observation/hid-restricted", "/fhir/Observation/hid-restricted/_history/1",
    "/fhir/Observation/hid-restricted/_history", "/fhir/Observation/hid-objection",
    "/fhir/Observation?_id=hid-restricted", f"/fhir/Observation?identifier={IDS}|hid-restricted",
    f"/fhir/Observation?code={SCT}|{SENSITIVE}&_total=accurate", "/fhir/Observation?patient=pr1&_total=accurate",
    "/fhir/Observation?patient=pr2&_total=accurate", "/fhir/Observation?patient=pr1&_summary=count",
    f"/fhir/Patient?_has:Observation:patient:code={SENSITIVE}",
    f"/fhir/Patient?_has:Observation:patient:identifier={IDS}|hid-objection",
    f"/fhir/DiagnosticReport?result.code={SENSITIVE}", "/fhir/DiagnosticReport?result:Observation._id=hid-restricted",
    "/fhir/DiagnosticReport?_include=DiagnosticReport:result", "/fhir/Patient?_id=pr1&_revinclude=Observation:subject",
    "/fhir/Patient?_id=pr2&_revinclude=Observation:patient", "/fhir/Patient/pr1/$everything",
    "/fhir/Patient/pr2/$everything", "/fhir/Observation/_history?_count=1000", "/fhir/Patient/pr1/Observation",
    "/fhir/Observation?patient=pr1&_sort=-date&_count=2", "/fhir/Observation/_history?_count=2",
    "/fhir/_history?_count=3", "/fhir/Patient/pr1/$everything?_count=2", "/fhir/Observation?date=le" + _day(0) + "&_total=accurate",
]


@pytest.mark.parametrize("path", READ_PROBES)
def test_read_probe_answers_like_the_twin(twins: dict[str, Any], path: str) -> None:
    a, b = _both(twins, "GET", path)
    assert a == b


def test_paging_through_every_page_answers_like_the_twin(twins: dict[str, Any]) -> None:
    pages = {}
    for side in ("a", "b"):
        url, seen = "/fhir/Observation?patient=pr1&_count=1&_sort=-date&_total=accurate", []
        while url:
            r = twins[side].get(url, headers=twins[f"h{side}"])
            assert r.status_code == 200, r.text
            body = r.json()
            seen.append(_norm(body))
            nxt = [x["url"] for x in body.get("link", []) if x["relation"] == "next"]
            url = nxt[0].replace("http://testserver", "") if nxt else None
            assert len(seen) < 20
        pages[side] = seen
    assert pages["a"] == pages["b"]


def _cursor(t: dict[str, Any], side: str) -> str:
    body = t[side].get("/fhir/Observation?patient=pr1&_count=1", headers=t[f"h{side}"]).json()
    return next(x["url"] for x in body["link"] if x["relation"] == "next").replace("http://testserver", "")


def test_tampered_and_foreign_cursors_answer_like_the_twin(twins: dict[str, Any]) -> None:
    ca, cb = _cursor(twins, "a"), _cursor(twins, "b")
    assert _norm(ca) == _norm(cb)
    for mutate in (lambda c: c[:-3] + ("AAA" if not c.endswith("AAA") else "BBB"),
                   lambda c: c.replace("_getpages=", "_getpages=x"), lambda c: c + "%00"):
        ra = twins["a"].get(mutate(ca), headers=twins["ha"])
        rb = twins["b"].get(mutate(cb), headers=twins["hb"])
        assert ra.status_code == rb.status_code == 400, (ra.text, rb.text)
        assert _answer(ra) == _answer(rb)
    # another requester presenting the clinician's cursor is refused, identically
    ra = twins["a"].get(ca, headers=twins["oa"])
    rb = twins["b"].get(cb, headers=twins["ob"])
    assert ra.status_code == rb.status_code and ra.status_code in (400, 403), (ra.text, rb.text)
    assert _answer(ra) == _answer(rb)


def test_conditional_create_and_update_answer_like_the_twin(twins: dict[str, Any],
                                                            fingerprint: Callable[[], Any]) -> None:
    new = {k: v for k, v in _obs("x", "pr1").items() if k not in ("id", "identifier")}
    for cond in (f"identifier={IDS}|hid-restricted", f"identifier={IDS}|hid-objection",
                 f"code={SCT}|{SENSITIVE}&patient=pr1"):
        a, b = _both(twins, "POST", "/fhir/Observation", new, {"if-none-exist": cond})
        assert a == b and a[0] == 201, (a, b)
    for cond in (f"identifier={IDS}|hid-restricted", "_id=hid-objection"):
        body = {**new, "identifier": [{"system": IDS, "value": f"cu-{cond[-6:]}"}]}
        a, b = _both(twins, "PUT", f"/fhir/Observation?{cond}", body)
        assert a == b, (a, b)
    # a conditional update that matches nothing but names the hidden id in its body
    for hid in HIDDEN:
        body = {**_obs(hid, "pr1"), "identifier": [{"system": IDS, "value": f"nomatch-{hid}"}]}
        a, b = _both(twins, "PUT", f"/fhir/Observation?identifier={IDS}|nomatch-{hid}", body)
        assert a == b, (a, b)
    # the hidden resources were not touched by any of this
    _assert_hidden_untouched(twins)


def _assert_hidden_untouched(twins: dict[str, Any]) -> None:
    from exchange.db.engine import read_tx
    from exchange.repository import store

    with read_tx(twins["a"].app.state.engine) as conn:
        for hid in HIDDEN:
            cur = store.read_current(conn, "Observation", hid)
            assert cur is not None and not cur.deleted and cur.version_id == 1, hid


def test_writes_to_a_hidden_id_answer_like_the_twin_and_change_nothing(twins: dict[str, Any],
                                                                       fingerprint: Callable[[], Any]) -> None:
    """Regression: DELETE of a hidden id answered 404 where an absent id answers 204, and
    PUT over a hidden id updated it (it never consulted the disclosure gate)."""
    before = fingerprint()
    for hid in HIDDEN:
        body = {**_obs(hid, "pr1"), "status": "amended"}
        probes = [("PUT", f"/fhir/Observation/{hid}", body, {}),
                  ("PUT", f"/fhir/Observation/{hid}", body, {"if-match": 'W/"1"'}),
                  ("PATCH", f"/fhir/Observation/{hid}", [{"op": "replace", "path": "/status", "value": "amended"}],
                   {"content-type": "application/json-patch+json"}),
                  ("DELETE", f"/fhir/Observation/{hid}", None, {}),
                  ("DELETE", f"/fhir/Observation?identifier={IDS}|{hid}", None, {})]
        for method, path, payload, headers in probes:
            a, b = _both(twins, method, path, payload, headers)
            assert a == b, (method, path, a, b)
    assert fingerprint() == before
    _assert_hidden_untouched(twins)


def test_batch_entries_answer_like_the_twin(twins: dict[str, Any]) -> None:
    entries = [{"request": {"method": "GET", "url": u}} for u in (
        "Observation/hid-restricted", "Observation/hid-objection", f"Observation?identifier={IDS}|hid-restricted",
        f"Patient?_has:Observation:patient:code={SENSITIVE}", "Observation?patient=pr1&_total=accurate")]
    entries.append({"request": {"method": "DELETE", "url": "Observation/hid-objection"}})
    a, b = _both(twins, "POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert a == b, (a, b)
    new = {k: v for k, v in _obs("x", "pr1").items() if k not in ("id", "identifier")}
    for hid in HIDDEN:
        transactions = [
            [{"request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={IDS}|{hid}"},
              "resource": new}],
            [{"request": {"method": "PUT", "url": f"Observation/{hid}"}, "resource": {**_obs(hid, "pr1"), "status": "amended"}}],
            [{"request": {"method": "DELETE", "url": f"Observation/{hid}"}}],
            [{"request": {"method": "GET", "url": f"Observation/{hid}"}}],
        ]
        for tx in transactions:
            a, b = _both(twins, "POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": tx})
            assert a == b, (tx, a, b)
    _assert_hidden_untouched(twins)


def test_control_the_probes_can_see_what_is_not_hidden(twins: dict[str, Any]) -> None:
    """Without this the twins could agree because both refuse everything."""
    r = twins["a"].get("/fhir/Observation?patient=pr1&_count=100", headers=twins["ha"])
    assert r.status_code == 200
    ids = {e["resource"]["id"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert {f"pvis-pr1-{i}" for i in range(3)} <= ids
    assert twins["a"].get("/fhir/DiagnosticReport/prep1", headers=twins["ha"]).status_code == 200
    _assert_hidden_untouched(twins)
