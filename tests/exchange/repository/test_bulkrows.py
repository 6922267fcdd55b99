"""Driver-level bulk appends (COPY on PostgreSQL, executemany on SQLite) store exactly
what SQLAlchemy Core inserts store, and fail like them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError

from consent.tables import consent_fact, consent_link
from exchange.db.engine import write_tx
from exchange.repository.bulkrows import insert_rows
from exchange.search.tables import search_date, search_quantity, search_token

BST = timezone(timedelta(hours=1))
CASES = [
    (consent_link, ("rid", "patient_id", "kind", "org_ref", "org_ods", "period_end"),
     [("p1", "encounter", "Organization/o", None, datetime(2026, 10, 2, 9, 30, tzinfo=BST)),
      ("p1", "care_team", None, "RW4", datetime(2026, 1, 1, tzinfo=UTC)),
      ("p2", "registered_gp", None, "N82001", None)]),
    (consent_fact, ("rid", "res_type", "res_id", "patient_id", "author_org", "restricted", "not_for_patient",
                    "care_pref", "directive", "ods_code"),
     [("Observation", "o1", "p1", "RW4", True, False, True, False, None)]),
    (search_date, ("rid", "res_type", "param", "grp", "low", "high"),
     [("Observation", "date", 0, datetime(2026, 10, 2, 8, 30), datetime(2026, 10, 2, 8, 31)),
      ("Observation", "date", 0, datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59))]),
    (search_quantity, ("rid", "res_type", "param", "grp", "low", "high", "system", "code"),
     [("Observation", "value-quantity", 0, 10.5, 10.5, "http://unitsofmeasure.org", "mm[Hg]"),
      ("Observation", "value-quantity", 2, -1e300, 1e300, None, None)]),
    (search_token, ("rid", "res_type", "param", "grp", "system", "code", "text"),
     [("Patient", "name", 0, None, "Zoë \\ \t 'quoted'\n", None)]),
]


def _read(conn, table, rid: int) -> list[tuple]:  # noqa: ANN001
    cols = [c for c in table.columns if c.name not in ("rid", "id")]
    return sorted((tuple(row) for row in conn.execute(select(*cols).where(table.c.rid == rid))), key=repr)


@pytest.mark.parametrize(("table", "columns", "rows"), CASES, ids=[c[0].name for c in CASES])
def test_insert_rows_stores_what_core_insert_stores(engine, table, columns, rows) -> None:  # noqa: ANN001
    core_rid, fast_rid = 770001, 770002
    with write_tx(engine) as conn:
        for rid in (core_rid, fast_rid):
            conn.execute(delete(table).where(table.c.rid == rid))
        conn.execute(insert(table), [dict(zip(columns, (core_rid, *r), strict=True)) for r in rows])
        insert_rows(conn, table, columns, [(fast_rid, *r) for r in rows])
        core, fast = _read(conn, table, core_rid), _read(conn, table, fast_rid)
        for rid in (core_rid, fast_rid):
            conn.execute(delete(table).where(table.c.rid == rid))
    assert len(core) == len(rows)
    assert fast == core


def test_insert_rows_fails_like_an_insert_and_nothing_is_kept(engine) -> None:  # noqa: ANN001
    with pytest.raises(DBAPIError), write_tx(engine) as conn:
        insert_rows(conn, search_token, ("rid", "res_type", "param", "grp", "code"),
                    [(770003, "Patient", "gender", 0, "female"), (770003, None, "gender", 0, "male")])
    with engine.connect() as conn:
        assert _read(conn, search_token, 770003) == []


def test_no_rows_is_a_no_op(engine) -> None:  # noqa: ANN001
    with write_tx(engine) as conn:
        insert_rows(conn, search_token, ("rid", "res_type", "param", "grp"), [])
