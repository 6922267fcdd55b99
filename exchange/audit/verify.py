"""Verifying the audit chain (``exchange audit verify [--from DATE]``; issue 7).

Checks, and names the first event that fails:

* every checkpoint's Ed25519 signature (key kept outside the database);
* every event: gap-free ``seq`` (a deleted event leaves a gap), ``prev_hash`` equal to
  the previous event's hash (reordering breaks it), its own hash over its canonical
  content (a modified event), and its query columns and patient rows re-derived from
  the content (a column edited behind the log's back);
* each checkpoint's head hash against the event it covers;
* truncation: a signed checkpoint (or the witness file beside the key) covering more
  events than the log holds, or a chain head row that disagrees with the last event;
* a missing prefix of the log is accepted only when a signed *retention* checkpoint
  covers exactly the events removed by ``exchange audit retention``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, func, select

from exchange.audit import keys
from exchange.audit.chain import GENESIS, checkpoint_created_iso, event_hash
from exchange.audit.columns import COLUMN_NAMES, derive, parse_instant
from exchange.audit.tables import audit_checkpoint, audit_event, audit_event_patient, audit_head
from exchange.db.engine import read_tx
from exchange.settings import Settings

CHUNK = 1000


@dataclass
class VerifyResult:
    ok: bool
    events_checked: int = 0
    checkpoints_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    failure_seq: int | None = None
    failure_event_id: str | None = None
    problem: str | None = None
    checked_at: str = ""

    def summary(self) -> str:
        if self.ok:
            span = f"events {self.first_seq}..{self.last_seq}" if self.first_seq else "no events"
            return (f"OK: {self.events_checked} events ({span}) and "
                    f"{self.checkpoints_checked} signed checkpoints verified")
        where = f"event {self.failure_seq}" if self.failure_seq is not None else "the log"
        if self.failure_event_id:
            where += f" (AuditEvent/{self.failure_event_id})"
        return f"FAILED at {where}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, summary=self.summary())


class _Failure(Exception):
    def __init__(self, problem: str, seq: int | None = None, event_id: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.seq, self.event_id = problem, seq, event_id


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def verify(engine: Engine, settings: Settings, from_date: datetime | None = None) -> VerifyResult:
    """Check the chain and the checkpoints; ``from_date`` limits the walk to later events."""
    result = VerifyResult(ok=True, checked_at=datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        with read_tx(engine) as conn:
            _verify(conn, settings, from_date, result)
    except _Failure as f:
        result.ok, result.problem = False, f.problem
        result.failure_seq, result.failure_event_id = f.seq, f.event_id
    return result


def _public_key(settings: Settings):  # noqa: ANN202
    path = keys.key_path(settings)
    if not path.exists():
        return None
    return serialization.load_pem_private_key(path.read_bytes(), password=None).public_key()


def _check_signatures(conn, settings: Settings, result: VerifyResult) -> list[Any]:  # noqa: ANN001
    cps = conn.execute(select(audit_checkpoint).order_by(audit_checkpoint.c.id)).all()
    if not cps:
        return []
    public = _public_key(settings)
    if public is None:
        raise _Failure(f"the audit signing key {keys.key_path(settings)} is missing")
    kid = keys.key_id(public)
    previous = 0
    for cp in cps:
        msg = keys.checkpoint_message(cp.kind, cp.event_count, cp.head_hash,
                                      checkpoint_created_iso(cp.created))
        if cp.key_id != kid or not keys.signature_ok(public, msg, cp.signature):
            raise _Failure(f"checkpoint #{cp.id} ({cp.kind}, {cp.event_count} events) "
                           "has an invalid signature", cp.event_count)
        if cp.kind != "retention":
            if cp.event_count < previous:
                raise _Failure(f"checkpoint #{cp.id} goes backwards ({cp.event_count} < {previous})")
            previous = cp.event_count
        result.checkpoints_checked += 1
    return list(cps)


def _verify(conn, settings: Settings, from_date: datetime | None, result: VerifyResult) -> None:  # noqa: ANN001
    cps = _check_signatures(conn, settings, result)
    lo, hi = conn.execute(select(func.min(audit_event.c.seq), func.max(audit_event.c.seq))).one()
    retention = [cp for cp in cps if cp.kind == "retention"]
    anchor_count, anchor_hash = 0, GENESIS
    if retention:
        last_ret = max(retention, key=lambda cp: cp.event_count)
        anchor_count, anchor_hash = last_ret.event_count, last_ret.head_hash
    if lo is not None and lo != anchor_count + 1:
        first = conn.execute(select(audit_event.c.event_id).where(audit_event.c.seq == lo)).scalar()
        if lo <= anchor_count:
            raise _Failure(f"events up to {anchor_count} were removed by retention but event "
                           f"{lo} is still present", lo, first)
        raise _Failure(f"events {anchor_count + 1}..{lo - 1} are missing and no signed retention "
                       "checkpoint covers them", lo, first)
    by_count: dict[int, list[Any]] = {}
    for cp in cps:
        by_count.setdefault(cp.event_count, []).append(cp)
    start, prev = lo, anchor_hash
    if from_date is not None and lo is not None:
        start = conn.execute(select(func.min(audit_event.c.seq))
                             .where(audit_event.c.recorded >= from_date)).scalar()
        if start is not None and start > lo:
            prev = conn.execute(select(audit_event.c.hash).where(audit_event.c.seq == start - 1)).scalar()
            if prev is None:
                raise _Failure(f"event {start - 1} is missing", start)
    if start is not None:
        _walk(conn, start, hi, prev, by_count, result)
    end = hi if hi is not None else anchor_count
    for cp in cps:
        if cp.event_count > end:
            raise _Failure(f"the log ends at event {end} but signed checkpoint #{cp.id} covers "
                           f"{cp.event_count} events: events were removed from the end", end + 1)
    witness = keys.read_witness(settings)
    if witness is not None and witness.event_count > end:
        raise _Failure(f"the log ends at event {end} but the witness file records a signed "
                       f"checkpoint at {witness.event_count} events: events were removed", end + 1)
    head = conn.execute(select(audit_head.c.event_count).where(audit_head.c.id == 1)).scalar()
    if head is not None and head != end:
        raise _Failure(f"the chain head records {head} events but the log ends at {end}", end + 1)


def _walk(conn, start: int, hi: int, prev: str, by_count: dict[int, list[Any]],  # noqa: ANN001
          result: VerifyResult) -> None:
    expected = start
    result.first_seq = start
    cols = [audit_event.c.seq, audit_event.c.event_id, audit_event.c.recorded, audit_event.c.content,
            audit_event.c.hash, audit_event.c.prev_hash] + [audit_event.c[n] for n in COLUMN_NAMES]
    while expected <= hi:
        upto = expected + CHUNK - 1
        rows = conn.execute(select(*cols).where(audit_event.c.seq >= expected, audit_event.c.seq <= upto)
                            .order_by(audit_event.c.seq)).all()
        pats: dict[int, set[str]] = {}
        for s, p in conn.execute(select(audit_event_patient.c.seq, audit_event_patient.c.patient_id)
                                 .where(audit_event_patient.c.seq >= expected,
                                        audit_event_patient.c.seq <= upto)):
            pats.setdefault(s, set()).add(p)
        for row in rows:
            _check_row(row, expected, prev, pats.get(row.seq, set()))
            for cp in by_count.get(row.seq, []):
                if cp.head_hash != row.hash:
                    raise _Failure(f"signed checkpoint #{cp.id} does not match this event's hash "
                                   "(the log was altered before it)", row.seq, row.event_id)
            prev = row.hash
            expected += 1
            result.events_checked += 1
            result.last_seq = row.seq
        if len(rows) < CHUNK and expected <= hi:
            nxt = conn.execute(select(audit_event.c.seq, audit_event.c.event_id)
                               .where(audit_event.c.seq > expected).order_by(audit_event.c.seq)).first()
            raise _Failure(f"event {expected} is missing (deleted); the chain breaks here",
                           nxt.seq if nxt else expected, nxt.event_id if nxt else None)


def _check_row(row: Any, expected: int, prev: str, patients: set[str]) -> None:
    if row.seq != expected:
        raise _Failure(f"event {expected} is missing (deleted); the chain breaks here",
                       row.seq, row.event_id)
    if row.prev_hash != prev:
        raise _Failure("its link to the previous event is broken (events deleted or reordered)",
                       row.seq, row.event_id)
    content = bytes(row.content)
    if event_hash(row.seq, row.prev_hash, content) != row.hash:
        raise _Failure("its content does not match its hash (the event was modified)",
                       row.seq, row.event_id)
    event = orjson.loads(content)
    if event.get("id") != row.event_id:
        raise _Failure("its id column does not match its content", row.seq, row.event_id)
    if _aware(row.recorded) != parse_instant(event["recorded"]):
        raise _Failure("its recorded time column does not match its content", row.seq, row.event_id)
    derived, derived_patients = derive(event)
    for name in COLUMN_NAMES:
        if getattr(row, name) != derived[name]:
            raise _Failure(f"its '{name}' column does not match its content", row.seq, row.event_id)
    if set(derived_patients) != patients:
        raise _Failure("its patient rows do not match its content", row.seq, row.event_id)
