"""Paging stability under concurrent writes, cursor binding, and the disclosure gate
narrowing matches, includes, chains, _has and totals (design.md, "the one idea")."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from exchange.db.engine import read_tx, write_tx
from exchange.outcome import FhirError
from exchange.pipeline.context import Requester
from exchange.pipeline.disclosure import PERMIT, Decision
from exchange.repository.store import read_current
from exchange.search import service


def _next(bundle):
    return {link["relation"]: link["url"] for link in bundle["link"]}.get("next")


def _cursor(url):
    return parse_qs(urlparse(url).query)["_getpages"][0]


def _obs(i: int, status: str = "final", run: str = "") -> dict:
    return {"resourceType": "Observation", "id": f"pg{run}-{i}", "status": status,
            "code": {"coding": [{"system": "http://example.org", "code": f"paging{run}"}]},
            "subject": {"reference": "Patient/p4"}, "effectiveDateTime": f"2022-01-{(i % 28) + 1:02d}"}


@pytest.mark.parametrize(("run", "sort"), [("a", ""), ("b", "-date"), ("c", "status,date")])
def test_walk_pages_during_writes_yields_each_match_once(sx, run, sort):
    with write_tx(sx.engine) as conn:
        for i in range(25):
            sx.put(conn, _obs(i, run=run))
    query = [("code", f"http://example.org|paging{run}"), ("_count", "4")] + ([("_sort", sort)] if sort else [])
    ctx = sx.context()
    with read_tx(sx.engine) as conn:
        page = orjson.loads(service.search(conn, ctx, sx.settings, resource_type="Observation",
                                           params=query, base_url=sx.base))
    seen = sx.ordered(page)
    extra = 100
    step = 0
    while _next(page):
        step += 1
        with write_tx(sx.engine) as conn:  # writes between pages: new matches and updates
            sx.put(conn, _obs(extra, run=run))
            extra += 1
            sx.put(conn, _obs(step % 25, status="amended", run=run))
        with read_tx(sx.engine) as conn:
            page = orjson.loads(service.search_page(conn, ctx, sx.settings, _cursor(_next(page)), sx.base))
        seen += sx.ordered(page)
    assert len(seen) == len(set(seen))
    assert set(seen) == {f"pg{run}-{i}" for i in range(25)}


def test_cursor_is_signed_and_bound_to_requester(sx):
    alice = sx.context(Requester(kind="user", client_id="a", practitioner_id="alice"))
    bob = sx.context(Requester(kind="user", client_id="a", practitioner_id="bob"))
    with read_tx(sx.engine) as conn:
        page = orjson.loads(service.search(conn, alice, sx.settings, resource_type="Patient",
                                           params=[("_count", "1")], base_url=sx.base))
        cursor = _cursor(_next(page))
        assert sx.ordered(orjson.loads(service.search_page(conn, alice, sx.settings, cursor, sx.base)))
        with pytest.raises(FhirError) as err:
            service.search_page(conn, bob, sx.settings, cursor, sx.base)
        assert err.value.status == 403
        body, mac = cursor.split(".")
        forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
        with pytest.raises(FhirError) as err:
            service.search_page(conn, alice, sx.settings, forged, sx.base)
        assert err.value.status == 400
        with pytest.raises(FhirError):
            service.search_page(conn, alice, sx.settings.with_(secret_key="other"), cursor, sx.base)


class HidingGate:
    """Hides a fixed set of resources, both in SQL and per resource."""

    def __init__(self, engine, refs: list[tuple[str, str]], *, sql: bool = True) -> None:
        with read_tx(engine) as conn:
            self.rids = {read_current(conn, t, i).rid for t, i in refs}
        self.sql = sql

    def sql_filter(self, conn, ctx, resource_type, rid_column):
        return rid_column.notin_(sorted(self.rids)) if self.sql else None

    def check(self, conn, ctx, resource):
        if resource.rid in self.rids:
            return Decision("deny", rule="test-hide", notice="Some information was withheld")
        return PERMIT


def test_gate_makes_hidden_resources_not_exist(sx):
    gate = HidingGate(sx.engine, [("Patient", "p2"), ("Observation", "o3")])

    def find(rtype, q, **kw):
        return sx.find(rtype, q, ctx=sx.context(gate=gate), **kw)

    assert find("Patient", "name=smith") == {"p1", "p3"}
    assert find("Observation", "subject.name=smithers") == set()
    assert find("Patient", "_has:Observation:patient:code=8480-6") == set()
    assert find("Patient", "_has:Observation:patient:code=8867-4") == {"p1", "p4"}
    assert find("Observation", "subject=Patient/p1") == {"o1"}
    ctx = sx.context(gate=gate)
    b = sx.fetch("Observation", "subject=Patient/p1,Patient/p2&_total=accurate", ctx=ctx)
    assert b["total"] == 2 and sx.ids(b) == {"o1", "o2"}
    b = sx.fetch("Observation", "_id=o2&_include=Observation:subject", ctx=sx.context(gate=gate))
    assert sx.ids(b) == {"o2"} and sx.ids(b, "include") == set()
    b = sx.fetch("Patient", "_id=p1&_revinclude=Observation:subject", ctx=sx.context(gate=gate))
    assert sx.ids(b, "include") == {"o1"}
    assert find("Observation", "", compartment=("Patient", "p1")) == {"o1"}
    assert sx.fetch("Patient", "_summary=count", ctx=sx.context(gate=gate))["total"] == 3


def test_check_only_gate_still_withholds(sx):
    gate = HidingGate(sx.engine, [("Patient", "p2")], sql=False)
    ctx = sx.context(gate=gate)
    b = sx.fetch("Patient", "name=smith", ctx=ctx)
    assert sx.ids(b) == {"p1", "p3"}
    assert ctx.withheld == 1 and ctx.withheld_rules["test-hide"] == 1
    outcome = [e["resource"] for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["issue"] == [{"severity": "information", "code": "informational",
                                    "diagnostics": "Some information was withheld"}]
    assert {r.resource_id for r in ctx.released} == {"p1", "p3"}
