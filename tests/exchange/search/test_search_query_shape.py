"""The shape of the criteria SQL (exchange/search/query.py module doc): on SQLite one
driving ``IN`` criterion and correlated ``EXISTS`` probes for the others; results, totals
and the disclosure gate's narrowing must be the same in either form."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import event

from exchange.db.engine import read_tx
from exchange.pipeline.disclosure import PERMIT, Decision
from exchange.repository.store import read_current
from exchange.search import query, service
from exchange.search.params import Criterion

#: (type, query, compartment, expected ids) -- several ANDed criteria of every kind
CASES: list[tuple[str, str, tuple[str, str] | None, set[str]]] = [
    ("Observation", "patient=Patient/p1&code=http://loinc.org|8867-4&date=ge2024-01-01", None, {"o1"}),
    ("Observation", "date=ge2024-01-01&code=8867-4&patient=Patient/p1", None, {"o1"}),
    ("Observation", "date=ge2023-01-01&subject=Patient/p1,Patient/p3", None, {"o1", "o3", "o4"}),
    ("Observation", "code=8867-4&status:not=preliminary", None, {"o1", "o5"}),
    ("Observation", "code=8867-4&value-quantity:missing=true", None, set()),
    ("Observation", "code=8867-4&value-quantity:missing=false&date=lt2024-01-02", None, {"o1"}),  # o5 is 04:30Z
    ("Observation", "value-concept:missing=true&status:not=preliminary", None, {"o1", "o3", "o5"}),
    ("Observation", "subject:Patient.name=smith&code=8867-4", None, {"o1", "o2"}),
    ("Observation", "code-value-quantity=8867-4$72&subject=Patient/p1", None, {"o1"}),
    ("Observation", "code-value-quantity=8867-4$72,8867-4$100&status=final", None, {"o1", "o5"}),  # 72.4
    ("Observation", "_id=o1,o2&status=final", None, {"o1"}),
    ("Observation", "_id=o1&_id=o2", None, set()),
    ("Patient", "_has:Observation:patient:code=8867-4&gender=male", None, {"p1"}),
    ("Patient", "name=smith&birthdate=ge1971", None, {"p3"}),
    ("Patient", "identifier=9000000009&active:missing=false", None, {"p1"}),
    ("Patient", "general-practitioner.name=leeds&gender=male,female", None, {"p1"}),
    ("Observation", "code=8867-4", ("Patient", "p1"), {"o1"}),
    ("Observation", "status:not=final", ("Patient", "p1"), set()),
    ("Observation", "date=ge2020&value-quantity=gt100", ("Patient", "p1"), {"o3"}),
]


def _force(monkeypatch: pytest.MonkeyPatch, correlate: bool) -> None:
    monkeypatch.setattr(query.QueryContext, "correlate", property(lambda self: correlate))


@pytest.mark.parametrize(("rtype", "q", "compartment", "expected"), CASES)
def test_correlated_and_in_forms_agree(sx, monkeypatch, rtype, q, compartment, expected):
    results = {}
    for correlate in (False, True):  # both forms are valid SQL on both databases
        _force(monkeypatch, correlate)
        b = sx.fetch(rtype, q + "&_total=accurate", compartment=compartment)
        results[correlate] = (sx.ids(b), b["total"])
    assert results[True] == results[False] == (expected, len(expected))


class _Hide:
    def __init__(self, engine: Any, refs: list[tuple[str, str]]) -> None:
        with read_tx(engine) as conn:
            self.rids = {read_current(conn, t, i).rid for t, i in refs}

    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001, ANN201
        return rid_column.notin_(sorted(self.rids))

    def check(self, conn, ctx, resource):  # noqa: ANN001, ANN201
        return Decision("deny", rule="test-hide") if resource.rid in self.rids else PERMIT


@pytest.mark.parametrize("correlate", [False, True])
def test_gate_narrowing_is_kept_in_either_form(sx, monkeypatch, correlate):
    _force(monkeypatch, correlate)
    gate = _Hide(sx.engine, [("Observation", "o5"), ("Patient", "p2")])
    ctx = sx.context(gate=gate)
    b = sx.fetch("Observation", "code=8867-4&date=ge2024-01-01&_total=accurate", ctx=ctx)
    assert sx.ids(b) == {"o1", "o2"} and b["total"] == 2 and ctx.withheld == 0  # o5 never reached release
    b = sx.fetch("Observation", "code=8867-4&subject:Patient.name=smith&_total=accurate", ctx=sx.context(gate=gate))
    assert sx.ids(b) == {"o1"} and b["total"] == 1  # the hidden chain target matches nothing
    b = sx.fetch("Patient", "_has:Observation:patient:code=8867-4&gender=male,female,other&_total=accurate",
                 ctx=sx.context(gate=gate))
    assert sx.ids(b) == {"p1"} and b["total"] == 1  # p4 only via hidden o5; p2 hidden itself


def _main_statement(sx: Any, rtype: str, q: str) -> tuple[str, Any]:
    seen: list[tuple[str, Any]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT RESOURCE_CURRENT.RID"):
            seen.append((statement, parameters))

    event.listen(sx.engine, "before_cursor_execute", grab)
    try:
        sx.fetch(rtype, q)
    finally:
        event.remove(sx.engine, "before_cursor_execute", grab)
    assert len(seen) == 1
    return seen[0]


_ORDERS = [
    "patient=Patient/p1&code=http://loinc.org|8867-4&date=ge2024-01-01",
    "date=ge2024-01-01&code=http://loinc.org|8867-4&patient=Patient/p1",
]


@pytest.mark.parametrize("q", _ORDERS)
def test_sqlite_plan_materialises_only_the_driving_criterion(sx, q):
    if sx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite plan")
    statement, params = _main_statement(sx, "Observation", q)
    with read_tx(sx.engine) as conn:  # the fixture database has no ANALYZE statistics
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    assert plan[0] == "SEARCH resource_current USING INTEGER PRIMARY KEY (rowid=?)", plan
    lists = [i for i, step in enumerate(plan) if step.startswith("LIST SUBQUERY")]
    assert len(lists) == 1, plan  # before: one materialised list per criterion
    assert "search_reference" in plan[lists[0] + 1], plan  # the patient drives, whatever the order
    probes = [i for i, step in enumerate(plan) if step.startswith("CORRELATED")]
    assert len(probes) == 2, plan
    assert all(plan[i + 1].endswith("_rid (rid=?)") for i in probes), plan


def _generic_plan(sx: Any, statement: str, params: dict[str, Any]) -> str:
    """EXPLAIN of ``statement`` as PostgreSQL plans it once prepared, without its values."""
    from psycopg import sql as pgsql

    raw = sx.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute("SET enable_seqscan = off")  # the fixture tables are a few pages
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        sql = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
        cur.execute(f"PREPARE shape_probe AS {sql}")
        args = pgsql.SQL(", ").join(pgsql.Literal(params[n]) for n in names)
        cur.execute(pgsql.SQL("EXPLAIN EXECUTE shape_probe({})").format(args))
        plan = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("DEALLOCATE shape_probe")
    except Exception:
        raw.invalidate()  # never return a session with our settings to the pool
        raise
    raw.rollback()  # the SETs were inside the transaction: undone
    raw.close()
    return plan


@pytest.mark.parametrize("q", _ORDERS)
def test_postgresql_generic_plan_probes_through_the_rid_index(sx, q):
    """psycopg prepares a statement after 5 executions and PostgreSQL then may switch to a
    generic plan (values unknown): before, that plan drove the search from every row of
    the code (12-19 ms at 1,000 patients against 0.5 ms)."""
    if sx.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL plan")
    statement, params = _main_statement(sx, "Observation", q)
    assert statement.count("EXISTS") == 2 and statement.count("OFFSET 0") == 2
    plan = _generic_plan(sx, statement, params)
    assert "Semi Join" not in plan and plan.count("SubPlan") >= 2, plan
    driver = plan[: plan.index("SubPlan")]
    assert "on search_reference" in driver and "search_token" not in driver and "search_date" not in driver, plan
    for table in ("search_token", "search_date"):
        assert f"ix_{table}_rid on {table}" in plan, plan


def test_postgresql_generic_plan_of_a_name_prefix_is_an_index_range(sx):
    """``norm LIKE $1`` alone is no index range in a generic plan (the pattern is unknown):
    it read every family name of the type; the ``~>=~`` / ``~<~`` bounds are one."""
    if sx.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL plan")
    statement, params = _main_statement(sx, "Patient", "family=smi")
    plan = _generic_plan(sx, statement, params)
    assert re.search(r"Index Cond: .*norm\)::text ~>=~ .*norm\)::text ~<~", plan), plan


@pytest.mark.parametrize(("q", "custom"), [
    ("status=final&code=http://loinc.org|8867-4", True),  # no selective criterion: the planner orders
    ("date=ge2020&date=lt2030", True),
    ("patient=Patient/p1&code=8867-4", False),  # the reference drives probes
    ("code=8867-4", False),
])
def test_postgresql_custom_plans_only_without_a_selective_driver(sx, q, custom):
    if sx.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL setting")
    with read_tx(sx.engine) as conn:
        service.search(conn, sx.context(), sx.settings, resource_type="Observation", params=parse_qsl(q),
                       base_url=sx.base)
        mode = conn.exec_driver_sql("SHOW plan_cache_mode").scalar()
    assert mode == ("force_custom_plan" if custom else "auto")
    statement, _ = _main_statement(sx, "Observation", q)
    assert ("EXISTS" in statement) is (not custom and "&" in q)


def test_sqlite_coarse_token_does_not_drive(sx):
    if sx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite plan")
    statement, params = _main_statement(sx, "Patient", "gender=female&family=smith")
    with read_tx(sx.engine) as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    lists = [i for i, step in enumerate(plan) if step.startswith("LIST SUBQUERY")]
    assert len(lists) == 1 and "search_string" in plan[lists[0] + 1], plan


def _rank(types: list[str], name: str, value: str) -> int | None:
    return query.selectivity_rank(types, Criterion(name=name, values=value.split(","), raw_value=value))


def test_selectivity_rank_orders_the_kinds_of_criteria():
    obs = ["Observation"]
    assert _rank(obs, "_id", "o1") == 0
    assert _rank(obs, "_id", "o1") < _rank(obs, "patient", "Patient/p1") < _rank(obs, "code", "x|8867-4")
    assert _rank(obs, "code", "x|8867-4") < _rank(obs, "code", "http://loinc.org|")  # a whole code system
    assert _rank(obs, "code", "x|8867-4") < _rank(obs, "date", "ge2024") < _rank(obs, "code:text", "heart")
    assert _rank(["Patient"], "family:exact", "Smith") < _rank(["Patient"], "family", "Sm")
    assert _rank(["Patient"], "family", "Sm") < _rank(["Patient"], "family:contains", "mi")
    assert _rank(obs, "identifier", "x|1") == _rank(obs, "patient", "Patient/p1") == query.SELECTIVE
    assert _rank(obs, "code", "x|8867-4") < _rank(obs, "status", "final")  # a small code set
    assert _rank(["Patient"], "family", "Sm") < _rank(["Patient"], "gender", "female")
    assert _rank(obs, "subject:Patient.name", "smith") == 5
    assert _rank(["Patient"], "_has:Observation:patient:code", "x") == 5
    for name in ("status:not", "value-quantity:missing", "nonsense", "_id:exact"):
        assert _rank(obs, name, "x") is None  # negations never drive; unknowns are reported elsewhere
