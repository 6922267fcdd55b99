"""Reading and writing resource versions (FHIR R4 http.html#read, #vread, #update, #delete).

Every write appends an immutable version (canonical JSON bytes with ``meta.versionId``
and ``meta.lastUpdated`` assigned by the server), moves the current pointer, and
re-indexes the resource for search in the same database transaction. Reads hand back
the stored bytes untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, insert, select, update

from consent.facts import index_facts
from exchange.db.engine import is_sqlite
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.repository.stored import StoredResource
from exchange.search import indexer

_COLS = (rv.c.seq, rv.c.rid, rv.c.res_type, rv.c.res_id, rv.c.version_id, rv.c.last_updated,
         rv.c.deleted, rv.c.content, rv.c.method)


def now_utc() -> datetime:
    return datetime.now(UTC)


def fhir_instant(ts: datetime) -> str:
    """An R4 ``instant`` (milliseconds, explicit UTC offset)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row_to_stored(row: Any) -> StoredResource:
    ts = row.last_updated
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return StoredResource(
        rid=row.rid,
        resource_type=row.res_type,
        id=row.res_id,
        version_id=row.version_id,
        last_updated=ts,
        deleted=bool(row.deleted),
        content=bytes(row.content) if row.content is not None else None,
        method=row.method,
    )


def read_current(conn: Connection, resource_type: str, res_id: str) -> StoredResource | None:
    """The current version (possibly a delete marker) or None if never existed."""
    q = (
        select(*_COLS)
        .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
        .where(rc.c.res_type == resource_type, rc.c.res_id == res_id)
    )
    row = conn.execute(q).first()
    return _row_to_stored(row) if row else None


def read_version(conn: Connection, resource_type: str, res_id: str, version_id: int) -> StoredResource | None:
    q = select(*_COLS).where(
        rv.c.res_type == resource_type, rv.c.res_id == res_id, rv.c.version_id == version_id
    )
    row = conn.execute(q).first()
    return _row_to_stored(row) if row else None


def read_many_current(conn: Connection, rids: list[int]) -> list[StoredResource]:
    """Current versions for a list of rids, in the given order (deleted ones skipped)."""
    if not rids:
        return []
    out: dict[int, StoredResource] = {}
    for chunk_start in range(0, len(rids), 500):
        chunk = rids[chunk_start : chunk_start + 500]
        q = (
            select(*_COLS)
            .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
            .where(rc.c.rid.in_(chunk), rc.c.deleted.is_(False))
        )
        for row in conn.execute(q):
            out[row.rid] = _row_to_stored(row)
    return [out[r] for r in rids if r in out]


def read_refs(conn: Connection, refs: list[tuple[str, str]]) -> list[StoredResource]:
    """Current, non-deleted versions for (type, id) pairs."""
    out: list[StoredResource] = []
    for i in range(0, len(refs), 200):
        chunk = refs[i : i + 200]
        cond = [and_(rc.c.res_type == t, rc.c.res_id == r) for t, r in chunk]
        from sqlalchemy import or_

        q = (
            select(*_COLS)
            .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
            .where(or_(*cond), rc.c.deleted.is_(False))
        )
        out.extend(_row_to_stored(r) for r in conn.execute(q))
    return out


def lock_current(conn: Connection, resource_type: str, res_id: str) -> Any:
    """The current pointer row, locked for update on PostgreSQL (SQLite locks the db)."""
    q = select(rc).where(rc.c.res_type == resource_type, rc.c.res_id == res_id)
    if not is_sqlite(conn):
        q = q.with_for_update()
    return conn.execute(q).first()


def canonical_bytes(resource: dict[str, Any]) -> bytes:
    """Canonical JSON: resourceType, id and meta first, then the rest in given order."""
    head = {k: resource[k] for k in ("resourceType", "id", "meta") if k in resource}
    rest = {k: v for k, v in resource.items() if k not in head}
    return orjson.dumps({**head, **rest})


def write_version(
    conn: Connection,
    resource_type: str,
    res_id: str,
    resource: dict[str, Any] | None,
    *,
    method: str,
    current: Any = None,
    when: datetime | None = None,
) -> StoredResource:
    """Append a version (``resource`` None = a delete) and move the current pointer.

    ``current`` is the locked pointer row from :func:`lock_current` (or None for a new
    resource). The resource dict gets ``id`` and ``meta.versionId``/``meta.lastUpdated``.
    """
    when = when or now_utc()
    version = (current.version_id + 1) if current is not None else 1
    content: bytes | None = None
    if resource is not None:
        resource["id"] = res_id
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = fhir_instant(when)
        resource["meta"] = {"versionId": meta.pop("versionId"), "lastUpdated": meta.pop("lastUpdated"), **meta}
        content = canonical_bytes(resource)
    if current is None:
        rid = conn.execute(
            insert(rc)
            .values(res_type=resource_type, res_id=res_id, version_id=version, last_updated=when,
                    deleted=resource is None, seq=0)
            .returning(rc.c.rid)
        ).scalar_one()
    else:
        rid = current.rid
    seq = conn.execute(
        insert(rv)
        .values(rid=rid, res_type=resource_type, res_id=res_id, version_id=version,
                last_updated=when, deleted=resource is None, method=method, content=content)
        .returning(rv.c.seq)
    ).scalar_one()
    conn.execute(
        update(rc)
        .where(rc.c.rid == rid)
        .values(version_id=version, last_updated=when, deleted=resource is None, seq=seq)
    )
    indexer.index_resource(conn, rid, resource_type, resource)
    index_facts(conn, rid, resource_type, resource)
    return StoredResource(
        rid=rid, resource_type=resource_type, id=res_id, version_id=version, last_updated=when,
        deleted=resource is None, content=content, method=method, _data=resource,
    )
