"""The append-only hash chain of AuditEvents and its signed checkpoints (issue 7).

Every event's hash is ``SHA-256(seq "|" prev_hash "|" content)`` where ``content`` is
the canonical JSON (orjson, sorted keys) of the AuditEvent, and ``prev_hash`` is the
hash of the event before it (:data:`GENESIS` for the first). A batch of events is
appended under the chain head lock (``audit_head`` row: ``SELECT ... FOR UPDATE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite via :func:`exchange.db.engine.write_tx`), so
any number of server processes can append concurrently and ``seq`` stays gap-free.

Checkpoints (count, head hash, time) are signed with the Ed25519 key kept outside the
database (:mod:`exchange.audit.keys`); one is written every ``audit_checkpoint_every``
events (``settings.extra``, default 1000), on demand, and by the retention job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from exchange.audit import keys
from exchange.audit.columns import derive, parse_instant
from exchange.audit.tables import audit_checkpoint, audit_event, audit_event_patient, audit_head
from exchange.db.engine import is_sqlite
from exchange.settings import Settings

GENESIS = "0" * 64
DEFAULT_CHECKPOINT_EVERY = 1000


def canonical(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def event_hash(seq: int, prev_hash: str, content: bytes) -> str:
    h = hashlib.sha256(f"{seq}|{prev_hash}|".encode())
    h.update(content)
    return h.hexdigest()


def checkpoint_every(settings: Settings) -> int:
    return int(settings.extra.get("audit_checkpoint_every", DEFAULT_CHECKPOINT_EVERY))


def lock_head(conn: Connection) -> tuple[int, str, int]:
    """Lock the chain head for this transaction: (event count, head hash, checkpointed)."""
    q = select(audit_head.c.event_count, audit_head.c.head_hash, audit_head.c.checkpointed).where(
        audit_head.c.id == 1
    )
    if not is_sqlite(conn):
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:  # first write ever (migration 0002 normally creates the row)
        dialect = sqlite if is_sqlite(conn) else postgresql
        conn.execute(
            dialect.insert(audit_head)
            .values(id=1, event_count=0, head_hash=GENESIS, checkpointed=0)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        row = conn.execute(q).one()
    return int(row.event_count), row.head_hash, int(row.checkpointed)


@dataclass
class Appended:
    events: list[tuple[int, str]]  # (seq, hash) per event, in order
    checkpoint: dict | None  # the periodic checkpoint written, if any


def append_events(conn: Connection, settings: Settings, contents: Sequence[bytes]) -> Appended:
    """Append canonical AuditEvent bytes to the chain inside ``conn``'s write transaction.

    Writes a periodic signed checkpoint when the count crosses a multiple of
    ``audit_checkpoint_every``. After the commit, the caller should pass the checkpoint
    to :func:`exchange.audit.keys.advance_witness`.
    """
    count, head, checkpointed = lock_head(conn)
    rows: list[dict[str, Any]] = []
    patient_rows: list[dict[str, Any]] = []
    out: list[tuple[int, str]] = []
    for content in contents:
        event = orjson.loads(content)
        count += 1
        h = event_hash(count, head, content)
        cols, patients = derive(event)
        rows.append({"seq": count, "event_id": event["id"], "recorded": parse_instant(event["recorded"]),
                     "content": content, "hash": h, "prev_hash": head, **cols})
        patient_rows += [{"seq": count, "patient_id": p} for p in patients]
        out.append((count, h))
        head = h
    if rows:
        conn.execute(insert(audit_event), rows)
    if patient_rows:
        conn.execute(insert(audit_event_patient), patient_rows)
    every = checkpoint_every(settings)
    cp = None
    if every > 0 and count // every > checkpointed // every:
        cp = write_checkpoint(conn, settings, "periodic", count, head)
        checkpointed = count
    conn.execute(
        update(audit_head).where(audit_head.c.id == 1)
        .values(event_count=count, head_hash=head, checkpointed=checkpointed)
    )
    return Appended(out, cp)


def write_checkpoint(conn: Connection, settings: Settings, kind: str, count: int, head: str) -> dict:
    """Insert a checkpoint signed with the audit key; returns its values."""
    key = keys.load_or_create_key(settings)
    created = datetime.now(UTC)
    created_iso = checkpoint_created_iso(created)
    msg = keys.checkpoint_message(kind, count, head, created_iso)
    values = {"kind": kind, "event_count": count, "head_hash": head, "created": created,
              "key_id": keys.key_id(key.public_key()), "signature": keys.sign(key, msg)}
    conn.execute(insert(audit_checkpoint).values(**values))
    return values


def checkpoint_now(conn: Connection, settings: Settings, kind: str = "manual") -> dict:
    """Sign the current head (``audit checkpoint``); must run inside a write transaction."""
    count, head, _ = lock_head(conn)
    values = write_checkpoint(conn, settings, kind, count, head)
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(checkpointed=count))
    return values


def checkpoint_created_iso(created: datetime) -> str:
    """The exact text that was signed for a checkpoint's creation time."""
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.astimezone(UTC).isoformat(timespec="microseconds")
