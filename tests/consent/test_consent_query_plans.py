"""The consent gate's per-request directive lookups are index range scans, not scans of
every resource's facts (a full scan ran on every clinician request and grew with the
record: 1.3 ms at 28,000 resources on SQLite, most of the consent cost of a search)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, text

from consent.gate import _EVERY_PATIENT, _ONE_PATIENT
from consent.tables import consent_fact
from exchange.db.engine import write_tx


@pytest.fixture
def analysed(engine):  # noqa: ANN001, ANN201
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner is the one that chose the scan (PostgreSQL used the index)")
    rows = [{"rid": 900_000 + i, "res_type": "Observation", "res_id": f"plan-{i}", "patient_id": f"pp{i % 50}",
             "restricted": False, "not_for_patient": False, "care_pref": False, "directive": False}
            for i in range(3000)]
    with write_tx(engine) as conn:
        conn.execute(delete(consent_fact).where(consent_fact.c.res_id.like("plan-%")))
        conn.execute(insert(consent_fact), rows)
        conn.execute(text("ANALYZE"))  # statistics say: directive is one value everywhere
    return engine


def _plan(engine, statement) -> str:  # noqa: ANN001
    with engine.connect() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        return " | ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


@pytest.mark.parametrize("statement,params", [(_EVERY_PATIENT, {}), (_ONE_PATIENT, {"pid": "pp1"})],
                         ids=["every-patient", "one-patient"])
def test_directive_lookups_use_the_directive_index(analysed, statement, params) -> None:  # noqa: ANN001
    plan = _plan(analysed, statement.params(**params))
    assert "ix_consent_fact_directive_patient" in plan and "SCAN consent_fact" not in plan, plan


def test_relationship_narrowing_probes_each_candidate_patient() -> None:
    """No care relationship is tested per candidate (correlated on patient_id, using
    ix_consent_link_patient_id), never as NOT IN the organisation's whole caseload, which
    PostgreSQL hashed on every query: a GP practice's every search grew with its list."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql

    from consent.relationship import unrelated

    cond = unrelated("N82001", ["Organization/o1"], datetime(2025, 1, 1, tzinfo=UTC),
                     frozenset({"registered_gp"}), consent_fact.c.patient_id)
    sql = str(select(consent_fact.c.rid).where(cond).compile(dialect=postgresql.dialect()))
    assert "NOT (EXISTS" in sql and "consent_link.patient_id = consent_fact.patient_id" in sql, sql
    assert " NOT IN " not in sql, sql
