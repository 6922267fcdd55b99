"""Leak-test matrix (issue 5, "Done means"): every search path x every rule type.

For each rule a *hidden* resource is written that the requester must not see; every
search path is run with it present and again after it is deleted, and the two answers
must be identical -- same entries, same totals, same paging links (relations) and
pages -- so that nothing withheld can be seen or inferred. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from consent.facts import index_facts
from exchange.db.engine import read_tx, write_tx
from exchange.pipeline.context import RequestContext, Requester
from exchange.repository import store
from exchange.search.service import search, search_page

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
BP = "271649006"
BASE = "http://testserver/fhir"
HOSP = "LH001"


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def observation(oid: str, pid: str, author: str = "LG001", extra_code: str | None = None,
                security: list | None = None) -> dict:
    codings = [{"system": SCT, "code": BP}] + ([{"system": SCT, "code": extra_code}] if extra_code else [])
    meta: dict = {"tag": [{"system": SRC, "code": author}]}
    if security:
        meta["security"] = security
    return {"resourceType": "Observation", "id": oid, "status": "final", "meta": meta,
            "code": {"coding": codings}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": _day(-3)}


@pytest.fixture(scope="module")
def leak_world(put):  # noqa: ANN001, ANN201
    put({"resourceType": "Organization", "id": "lorg-gp", "identifier": [{"system": ODS, "value": "LG001"}]})
    for pid in ("l1", "l2", "l3", "l4"):
        put({"resourceType": "Patient", "id": pid, "name": [{"family": "Leakwell"}],
             "generalPractitioner": [{"reference": "Organization/lorg-gp"}]})
    for pid in ("l1", "l2", "l4"):
        put({"resourceType": "Encounter", "id": f"lenc-{pid}", "status": "in-progress",
             "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{pid}"},
             "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}},
             "period": {"start": _day(-2)}})
    for i in range(3):
        put(observation(f"lvis{i}", "l1"))
    scope = {"coding": [{"code": "patient-privacy"}]}
    put({"resourceType": "Consent", "id": "lc2", "status": "active", "scope": scope,
         "patient": {"reference": "Patient/l2"}, "provision": {"type": "deny"}})
    put({"resourceType": "Consent", "id": "lc4", "status": "active", "scope": scope,
         "patient": {"reference": "Patient/l4"}, "provision": {"type": "permit", "provision": [
             {"type": "deny", "actor": [{"reference": {"identifier": {"system": ODS, "value": HOSP}}}]}]}})
    return True


HOSPITAL = Requester(kind="user", role="R8000", organization=HOSP, purpose_of_use="TREAT")
CITIZEN = Requester(kind="patient", patient_id="l1")
RULES = {
    "legally-restricted": (HOSPITAL, observation("lhid", "l1", author="LS001", extra_code="105629000")),
    "objection": (HOSPITAL, observation("lhid", "l2")),
    "no-relationship": (HOSPITAL, observation("lhid", "l3")),
    "org-denial": (HOSPITAL, observation("lhid", "l4")),
    "not-for-patient": (CITIZEN, observation("lhid", "l1", security=[{"system": ACT, "code": "NOPAT"}])),
}
CODE = f"{SCT}|{BP}"
PATHS = {
    "match": ("Observation", [("code", CODE)]),
    "total": ("Observation", [("code", CODE), ("_total", "accurate")]),
    "summary-count": ("Observation", [("code", CODE), ("_summary", "count")]),
    "include": ("Observation", [("code", CODE), ("_include", "Observation:subject")]),
    "revinclude": ("Patient", [("family", "Leakwell"), ("_revinclude", "Observation:subject")]),
    "has": ("Patient", [("_has:Observation:subject:code", CODE)]),
    "chain": ("Observation", [("subject:Patient.family", "Leakwell"), ("code", CODE)]),
    "paging": ("Observation", [("code", CODE), ("_count", "1"), ("_total", "accurate")]),
}


def _shape(conn, ctx, body: bytes) -> list:  # noqa: ANN001
    """Entries, total and link relations of every page, following next links."""
    pages = []
    while True:
        b = orjson.loads(body)
        pages.append((b.get("total"), [(e.get("fullUrl"), (e.get("search") or {}).get("mode"))
                                       for e in b.get("entry", [])],
                      sorted(link["relation"] for link in b.get("link", []))))
        nxt = [link["url"] for link in b.get("link", []) if link["relation"] == "next"]
        if not nxt or len(pages) > 20:
            return pages
        cursor = parse_qs(urlparse(nxt[0]).query)["_getpages"][0]
        body = search_page(conn, ctx, ctx._settings, cursor, BASE)


def _run(cengine, gate, settings, requester, path) -> list:  # noqa: ANN001
    rtype, params = PATHS[path]
    ctx = RequestContext(requester=requester)
    ctx.gate = gate
    ctx._settings = settings
    with read_tx(cengine) as conn:
        return _shape(conn, ctx, search(conn, ctx, settings, resource_type=rtype,
                                        params=list(params), base_url=BASE))


def _write(cengine, resource: None, rid: str = "lhid") -> None:  # noqa: ANN001
    """Delete the hidden resource the way the write path does (index rows removed too)."""
    with write_tx(cengine) as conn:
        cur = store.lock_current(conn, "Observation", rid)
        if cur is not None and not cur.deleted:
            stored = store.write_version(conn, "Observation", rid, None, method="DELETE", current=cur)
            index_facts(conn, stored.rid, "Observation", None)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_hidden_resource_changes_no_search_answer(leak_world, put, cengine, gate, settings, rule):
    requester, hidden = RULES[rule]
    put(hidden)
    with_hidden = {p: _run(cengine, gate, settings, requester, p) for p in PATHS}
    _write(cengine, None)
    without = {p: _run(cengine, gate, settings, requester, p) for p in PATHS}
    for path in PATHS:
        assert with_hidden[path] == without[path], f"{rule} leaks through {path}"
        flat = orjson.dumps(with_hidden[path]).decode()
        assert "Observation/lhid" not in flat
    # the visible record is really there (the matrix is not vacuous)
    assert any(e for page in without["match"] for e in page[1])


def test_control_the_hidden_resource_is_found_without_consent(leak_world, put, cengine, gate, settings):
    """Without the consent rules the same hidden resource does change the answers."""
    anonymous = Requester(kind="anonymous")
    put(RULES["objection"][1])
    with_hidden = {p: _run(cengine, gate, settings, anonymous, p) for p in PATHS}
    _write(cengine, None)
    without = {p: _run(cengine, gate, settings, anonymous, p) for p in PATHS}
    assert all(with_hidden[p] != without[p] for p in PATHS)


def _l1_observations(cengine, gate, settings) -> list:  # noqa: ANN001
    ctx = RequestContext(requester=HOSPITAL)
    ctx.gate = gate
    with read_tx(cengine) as conn:
        body = search(conn, ctx, settings, resource_type="Observation",
                      params=[("subject", "Patient/l1"), ("_total", "accurate")], base_url=BASE)
    b = orjson.loads(body)
    return [b.get("total"), sorted(e["fullUrl"] for e in b.get("entry", []) if e["search"]["mode"] == "match")]


def test_reused_narrowing_follows_a_new_directive(leak_world, put, cengine, gate, settings):
    """The SQL narrowing is reused across requests with the same inputs; a directive
    written between two searches is among those inputs, so the next search obeys it."""
    from consent.narrowing import hidden_condition

    def built() -> object:
        ctx = RequestContext(requester=HOSPITAL)
        with read_tx(cengine) as conn:
            return hidden_condition(gate, conn, ctx)

    first = built()
    assert built() is first  # same requester, same record: built once
    before = _l1_observations(cengine, gate, settings)
    assert before[0] == 3 and len(before[1]) == 3
    put({"resourceType": "Consent", "id": "lc1-tmp", "status": "active",
         "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": "Patient/l1"},
         "provision": {"type": "deny"}})
    try:
        assert built() is not first
        assert _l1_observations(cengine, gate, settings) == [0, []]
    finally:
        with write_tx(cengine) as conn:
            cur = store.lock_current(conn, "Consent", "lc1-tmp")
            stored = store.write_version(conn, "Consent", "lc1-tmp", None, method="DELETE", current=cur)
            index_facts(conn, stored.rid, "Consent", None)
    assert _l1_observations(cengine, gate, settings) == before


def test_narrowing_cache_keeps_one_expression_per_requester_as_time_moves(leak_world, cengine, gate, monkeypatch):
    """The look-back cut-off moves every minute; the cache replaces the requester's
    expression rather than keeping one per minute (the server's memory grew with time)."""
    import consent.gate as gate_module
    from consent.narrowing import hidden_condition

    real = gate_module.datetime

    class Later(real):  # type: ignore[misc, valid-type]
        offset = timedelta(0)

        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return real.now(tz) + cls.offset

    monkeypatch.setattr(gate_module, "datetime", Later)
    gate._built.clear()
    built = []
    for minute in range(0, 300, 60):
        Later.offset = timedelta(seconds=minute * 60)
        ctx = RequestContext(requester=HOSPITAL)
        with read_tx(cengine) as conn:
            built.append(hidden_condition(gate, conn, ctx))
    assert len(gate._built) == 1
    assert len({id(b) for b in built}) == len(built)  # rebuilt as the cut-off moved
