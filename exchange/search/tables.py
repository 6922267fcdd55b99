"""Typed search index tables (FHIR R4 search.html §3.1.1, one table per parameter type).

Every row belongs to one resource (``rid`` = ``resource_current.rid``) and one search
parameter code (``param``), and repeats the resource type (``res_type``) so that the
main lookups are single index range scans on ``(res_type, param, value...)``.
``grp`` groups the rows extracted from one item of a composite parameter's base
(search.html#composite): the components of a composite match only within one group.
Dates are stored as naive UTC instants, ``low`` inclusive and ``high`` exclusive.
Quantities and numbers are stored as ``[low, high]`` ranges (a single value has
low == high).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, String, Table

from exchange.db.metadata import metadata


def _base(name: str, *cols: Column, indexes: tuple[tuple[str, ...], ...], **kw) -> Table:
    table = Table(
        name,
        metadata,
        Column("rid", BigInteger, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        Column("grp", Integer, nullable=False, default=0),
        *cols,
    )
    Index(f"ix_{name}_rid", table.c.rid)
    for i, idx_cols in enumerate(indexes):
        Index(f"ix_{name}_k{i}", *(table.c[c] for c in idx_cols), **kw.get(f"k{i}", {}))
    return table


search_token = _base(
    "search_token",
    Column("system", String(), nullable=True),
    Column("code", String(), nullable=True),
    Column("text", String(), nullable=True),
    indexes=(("res_type", "param", "code", "system"),),
)

search_string = _base(
    "search_string",
    Column("norm", String(), nullable=False),
    Column("exact", String(), nullable=False),
    indexes=(("res_type", "param", "norm"),),
    k0={"postgresql_ops": {"norm": "varchar_pattern_ops"}},
)

search_date = _base(
    "search_date",
    Column("low", DateTime(timezone=False), nullable=False),
    Column("high", DateTime(timezone=False), nullable=False),
    indexes=(("res_type", "param", "low"), ("res_type", "param", "high")),
)

search_reference = _base(
    "search_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", String(), nullable=True),
    indexes=(
        ("res_type", "param", "target_id", "target_type"),
        ("target_id", "target_type"),
        ("res_type", "param", "url"),
    ),
)

search_quantity = _base(
    "search_quantity",
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", String(), nullable=True),
    Column("code", String(), nullable=True),
    indexes=(("res_type", "param", "low"),),
)

search_number = _base(
    "search_number",
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    indexes=(("res_type", "param", "low"),),
)

search_uri = _base(
    "search_uri",
    Column("value", String(), nullable=False),
    indexes=(("res_type", "param", "value"),),
)

TABLE_BY_TYPE: dict[str, Table] = {
    "token": search_token,
    "string": search_string,
    "date": search_date,
    "reference": search_reference,
    "quantity": search_quantity,
    "number": search_number,
    "uri": search_uri,
}

ALL_TABLES: tuple[Table, ...] = tuple(TABLE_BY_TYPE.values())
