"""Batched version writes for ingest: the core write path, one statement per table per batch.

This is :func:`exchange.repository.store.write_version` (FHIR R4 http.html#update,
update-as-create for a system client) applied to a whole batch: the same immutable
version rows, current pointers, canonical bytes, ``meta.versionId`` /
``meta.lastUpdated`` and search index rows (:func:`exchange.search.indexer.extract`),
written with a handful of multi-row statements instead of ~15 round trips per
resource, inside the caller's transaction. The pipeline has already validated each
resource, applied the security-label rules and skipped unchanged content -- the three
things the interactive update does before ``write_version``. Current rows are locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite holds the database write lock).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, delete

from consent.facts import index_facts_many
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.repository.bulkrows import insert_rows, sqlite_value
from exchange.repository.store import canonical_bytes, fhir_instant, now_utc
from exchange.search import indexer
from exchange.search.tables import ALL_TABLES, TABLE_BY_TYPE


def lock_rows(conn: Connection, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The current pointer rows (rid, res_type, res_id, version_id, deleted) of (type,
    id) pairs, locked on PostgreSQL (SQLite: the transaction holds the database lock)."""
    uniq = sorted(set(refs))
    if not uniq:
        return {}
    if conn.dialect.name == "postgresql":
        # one statement of constant text whatever the batch size (array parameters), so
        # neither SQLAlchemy nor psycopg re-render and re-parse it per batch
        rows = conn.exec_driver_sql(_PG_LOCK, ([t for t, _ in uniq], [i for _, i in uniq]))
        return {(row.res_type, row.res_id): row for row in rows}
    # SQLite: a JSON array of keys joined to the (res_type, res_id) index -- one indexed
    # lookup per key (a row-value IN list would scan the whole index for every batch)
    rows = conn.exec_driver_sql(_SQLITE_LOCK, (orjson.dumps(uniq).decode(),))
    return {(row.res_type, row.res_id): row for row in rows}


_SQLITE_LOCK = (
    "SELECT c.rid, c.res_type, c.res_id, c.version_id, c.deleted FROM json_each(?) AS j "
    "JOIN resource_current AS c ON c.res_type = json_extract(j.value, '$[0]') "
    "AND c.res_id = json_extract(j.value, '$[1]')"
)
_PG_LOCK = (
    "SELECT c.rid, c.res_type, c.res_id, c.version_id, c.deleted "
    "FROM resource_current c JOIN unnest(%s::text[], %s::text[]) AS u(t, i) "
    "ON c.res_type = u.t AND c.res_id = u.i ORDER BY c.rid FOR UPDATE OF c"
)
_PG_NEW_CURRENT = (
    "INSERT INTO resource_current (res_type, res_id, version_id, last_updated, deleted, seq) "
    "SELECT u.t, u.i, 1, %s, false, 0 FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(t, i, n) "
    "ORDER BY u.n RETURNING rid, res_type, res_id"
)
_PG_VERSIONS = (
    "INSERT INTO resource_version (rid, res_type, res_id, version_id, last_updated, deleted, method, content) "
    "SELECT u.r, u.t, u.i, u.v, %s, false, 'PUT', u.c "
    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[], %s::bytea[]) WITH ORDINALITY AS u(r, t, i, v, c, n) "
    "ORDER BY u.n RETURNING seq, rid"
)
_PG_POINTERS = (
    "UPDATE resource_current AS c SET version_id = u.v, seq = u.s, last_updated = %s, deleted = false "
    "FROM unnest(%s::bigint[], %s::int[], %s::bigint[]) AS u(r, v, s) WHERE c.rid = u.r"
)


def put_many(conn: Connection, resources: list[dict[str, Any]], *, when: datetime | None = None) -> list[tuple[str, str, int, bool]]:
    """Write a new version of each resource; returns (type, id, version, created) in order.

    Each (type, id) may appear once. Resources are modified in place (id, meta).
    """
    if not resources:
        return []
    when = when or now_utc()
    stamp = fhir_instant(when)
    refs = [(r["resourceType"], r["id"]) for r in resources]
    if len(set(refs)) != len(refs):
        raise ValueError("put_many: a (type, id) appears more than once")
    current = lock_rows(conn, refs)
    new_refs = [ref for ref in refs if ref not in current]
    rids: dict[tuple[str, str], int] = {ref: current[ref].rid for ref in refs if ref in current}
    pg = conn.dialect.name == "postgresql"
    if new_refs and pg:
        rows = conn.exec_driver_sql(_PG_NEW_CURRENT, (when, [t for t, _ in new_refs], [i for _, i in new_refs])).all()
        rids.update({(r.res_type, r.res_id): r.rid for r in rows})
    elif new_refs:  # SQLite: the driver's executemany, then the new rids by key
        insert_rows(conn, rc, ("res_type", "res_id", "version_id", "last_updated", "deleted", "seq"),
                    [(t, i, 1, when, False, 0) for t, i in new_refs])
        rids.update({ref: row.rid for ref, row in lock_rows(conn, new_refs).items()})
    version_rows = []
    out: list[tuple[str, str, int, bool]] = []
    for res, ref in zip(resources, refs, strict=True):
        cur = current.get(ref)
        version = cur.version_id + 1 if cur is not None else 1
        meta = {k: v for k, v in (res.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        res["meta"] = {"versionId": str(version), "lastUpdated": stamp, **meta}
        version_rows.append({"rid": rids[ref], "res_type": ref[0], "res_id": ref[1], "version_id": version,
                             "last_updated": when, "deleted": False, "method": "PUT",
                             "content": canonical_bytes(res)})
        out.append((ref[0], ref[1], version, cur is None or bool(cur.deleted)))
    if pg:  # constant statement texts with array parameters (see lock_rows)
        seq_of = dict((rid, seq) for seq, rid in conn.exec_driver_sql(_PG_VERSIONS, (
            when, [vr["rid"] for vr in version_rows], [vr["res_type"] for vr in version_rows],
            [vr["res_id"] for vr in version_rows], [vr["version_id"] for vr in version_rows],
            [vr["content"] for vr in version_rows])))
        conn.exec_driver_sql(_PG_POINTERS, (when, [vr["rid"] for vr in version_rows],
                                            [vr["version_id"] for vr in version_rows],
                                            [seq_of[vr["rid"]] for vr in version_rows]))
        _index(conn, [(rids[ref], res) for res, ref in zip(resources, refs, strict=True)],
               fresh={rids[r] for r in new_refs})
        return out
    # SQLite (in-process): one prepared INSERT and UPDATE stepped per row by the driver;
    # the new versions' seqs are read back by (rid, version), unique per resource
    insert_rows(conn, rv, _VERSION_COLS, [tuple(vr[c] for c in _VERSION_COLS) for vr in version_rows])
    seq_of: dict[tuple[int, int], int] = {}
    all_rids = [vr["rid"] for vr in version_rows]
    for i in range(0, len(all_rids), 500):
        chunk = all_rids[i : i + 500]
        got = conn.exec_driver_sql(
            f"SELECT seq, rid, version_id FROM resource_version WHERE rid IN ({', '.join('?' * len(chunk))})",
            tuple(chunk))
        seq_of.update({(rid, v): seq for seq, rid, v in got})
    stamp_db = sqlite_value(conn, rc, "last_updated", when)
    conn.exec_driver_sql(
        "UPDATE resource_current SET version_id = ?, seq = ?, last_updated = ?, deleted = 0 WHERE rid = ?",
        [(vr["version_id"], seq_of[(vr["rid"], vr["version_id"])], stamp_db, vr["rid"]) for vr in version_rows])
    _index(conn, [(rids[ref], res) for res, ref in zip(resources, refs, strict=True)], fresh={rids[r] for r in new_refs})
    return out


def _index(conn: Connection, items: list[tuple[int, dict[str, Any]]], fresh: set[int]) -> None:
    """Replace the search index rows of the written resources (batched per table).

    Rows are appended with :func:`exchange.repository.bulkrows.insert_rows` (COPY on
    PostgreSQL, the driver's executemany on SQLite): the same rows the per-resource
    :func:`exchange.search.indexer.index_resource` writes, without per-row statement
    processing."""
    old = sorted(rid for rid, _ in items if rid not in fresh)
    if old and conn.dialect.name == "postgresql":
        for table in ALL_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE rid = ANY(%s::bigint[])", (old,))
        old = []
    for table in ALL_TABLES:
        for i in range(0, len(old), 500):
            conn.execute(delete(table).where(table.c.rid.in_(old[i : i + 500])))
    # consent facts, as the core write path does (consent.facts), one set-based pass
    index_facts_many(conn, [(rid, res["resourceType"], res) for rid, res in items], fresh=fresh)
    by_type: dict[str, list[tuple[Any, ...]]] = {ptype: [] for ptype in TABLE_BY_TYPE}
    for rid, res in items:
        rtype = res["resourceType"]
        for ptype, rows in indexer.extract(rtype, res).items():
            if rows:
                cols = _VALUE_COLS[ptype]
                by_type[ptype].extend((rid, rtype, r["param"], r["grp"], *[r.get(c) for c in cols]) for r in rows)
    for ptype, rows in by_type.items():
        insert_rows(conn, TABLE_BY_TYPE[ptype], ("rid", "res_type", "param", "grp", *_VALUE_COLS[ptype]), rows)


_VERSION_COLS = ("rid", "res_type", "res_id", "version_id", "last_updated", "deleted", "method", "content")
_VALUE_COLS: dict[str, tuple[str, ...]] = {
    ptype: tuple(c.name for c in table.columns if c.name not in ("rid", "res_type", "param", "grp"))
    for ptype, table in TABLE_BY_TYPE.items()
}
