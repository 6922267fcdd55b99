"""Receive (store, then acknowledge) and apply (drain in order of arrival) HL7 v2 messages.

HL7 v2.5.1 section 2.9 (original-mode acknowledgment): :func:`receive` parses and
pre-maps a message (no database writes besides the inbox), stores it durably with its
ACK and returns the ACK; a repeat of the same MSH-10 from the same sender gets the same
stored ACK and is not applied twice. :func:`drain` applies pending messages through the
adapter pipeline (``adapters.pipeline.ingest``) in order of arrival. Application is
at-least-once (a crash between applying and marking re-applies) and idempotent
(deterministic ids, unchanged content is not rewritten), so each message takes effect
exactly once.

Out of order: ADT messages carry the whole current state of a visit, so a message older
(EVN-2 / MSH-7) than one already applied to the same visit must not roll the visit back.
It is stored, acknowledged (AA) and applied *without its visit state*: the Encounter is
left as it is, but the patient (PID) and the clinical segments (AL1, DG1, OBX and the
resuscitation Flags) are applied, so a late message loses no clinical content. Its inbox
entry is marked ``superseded`` with a ``detail`` saying so (it never counts as the
visit's newest applied state).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from adapters.base import MappingContext, MappingError, RecordError, SourceRecord
from adapters.hl7v2 import ack as acks
from adapters.hl7v2.adapter import Hl7v2Adapter, map_message, record_from_text
from adapters.hl7v2.builder import safe_key
from adapters.hl7v2.datatypes import DataTypeError, ts_to_fhir
from adapters.hl7v2.parser import Message
from adapters.hl7v2.tables import hl7v2_inbox
from exchange.db.engine import write_tx
from exchange.outcome import Unavailable
from exchange.settings import Settings

#: ADT events whose message is the whole current state of the visit
STATE_EVENTS = {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A09", "A10",
                "A11", "A12", "A13"}


def _now() -> datetime:
    return datetime.now(UTC)


def content_hash(msg_text: str) -> str:
    """SHA-256 of the message with MSH-7 blanked: a re-send with a new timestamp is a repeat."""
    segments = re.split(r"\r\n|\r|\n", msg_text.strip("\x0b\x1c\r\n\ufeff"))
    if segments and segments[0].startswith("MSH") and len(segments[0]) > 3:
        fs = segments[0][3]
        fields = segments[0].split(fs)
        if len(fields) > 6:
            fields[6] = ""
        segments[0] = fs.join(fields)
    return hashlib.sha256("\r".join(s for s in segments if s).encode()).hexdigest()


def _order_info(msg: Message) -> tuple[str | None, str | None]:
    """(subject key, UTC event time) for the out-of-order rule; None for other messages."""
    if msg.message_code != "ADT" or msg.trigger_event not in STATE_EVENTS:
        return None, None
    pv1 = msg.first("PV1")
    if pv1 is None or not pv1.get(19):
        return None, None
    evn = msg.first("EVN")
    raw = (evn.get(2) if evn is not None else "") or msg.msh.get(7)
    try:
        when = ts_to_fhir(raw) if raw else None
    except DataTypeError:
        when = None
    if when and "T" in when:
        when = datetime.fromisoformat(when).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return safe_key("enc", pv1.get(19)), when


def _reject_nul(engine: Engine, text: str, peer: str | None) -> str:
    """A message holding NUL bytes is rejected (AR) and kept with each NUL written as the
    HL7 hex escape ``\\X00\\`` (no database text column can hold NUL), so nothing
    acknowledged is lost and the sender is told why instead of re-sending for ever."""
    stored = text.replace("\x00", "\\X00\\")
    digest = content_hash(stored)
    parsed = record_from_text(stored, f"mllp:{peer or 'unknown'}")
    control = "" if isinstance(parsed, RecordError) else (parsed.data.control_id or "")
    control = control.replace("\x00", "\\X00\\")  # the parser unescapes: escape it again
    reason = "the message contains NUL characters, which HL7 v2 does not allow"
    ack = acks.build_ack("AR", control_id=control, reason=reason, error_code=acks.SEGMENT_SEQUENCE_ERROR)
    return _store(engine, f"unparsed|{digest}", control or "?", "?", digest, stored, peer,
                  "rejected", "AR", ack, reason, None, None)


def receive(engine: Engine, text: str, *, source_system: str = "hl7v2",
            peer: str | None = None) -> str:
    """Store one message durably and return the ACK to send (AA, AE or AR)."""
    text = text.strip("\x0b\x1c\r\n\ufeff")
    if "\x00" in text:
        return _reject_nul(engine, text, peer)
    digest = content_hash(text)
    record = record_from_text(text, f"mllp:{peer or 'unknown'}")
    if isinstance(record, RecordError):
        control = record.source_id or ""
        ack = acks.build_ack("AR", control_id=control, reason=record.reason,
                             error_code=acks.REQUIRED_FIELD_MISSING
                             if "MSH-10" in (record.element or "") else acks.SEGMENT_SEQUENCE_ERROR)
        return _store(engine, f"unparsed|{digest}", control or "?", "?", digest, text, peer,
                      "rejected", "AR", ack, record.reason, None, None)
    msg: Message = record.data
    key = f"{msg.msh.raw(3)}|{msg.msh.raw(4)}|{msg.control_id}"
    note = None
    existing = _existing(engine, key)
    if existing is not None:
        if existing.content_sha256 == digest:
            return existing.ack  # a repeat: the same ACK, not applied again
        # the same MSH-10 for different content (a sender's counter reset, a regenerated
        # message): never lose it; it is its own inbox entry, deduplicated by content
        key = f"{key}|{digest[:16]}"
        note = f"MSH-10 {msg.control_id} was used before for a different message"
        again = _existing(engine, key)
        if again is not None:
            return again.ack
    status, code, reason, error_code = "pending", "AA", "", acks.APPLICATION_ERROR
    try:
        Hl7v2Adapter().map(record, MappingContext(source_system=source_system, feed="mllp"))
    except MappingError as exc:
        unsupported = exc.element == "MSH-9"
        status, code = ("rejected", "AR") if unsupported else ("error", "AE")
        reason = f"{exc.reason} ({exc.element})" if exc.element else exc.reason
        error_code = acks.UNSUPPORTED_EVENT if unsupported else acks.REQUIRED_FIELD_MISSING
    except Exception as exc:  # an adapter bug: keep the message, tell the sender (AE)
        status, code = "error", "AE"
        reason = f"the exchange could not map this message ({type(exc).__name__})"
    ack = acks.build_ack(code, msg=msg, reason=reason, error_code=error_code)
    subject, when = _order_info(msg)
    detail = "; ".join(x for x in (reason, note) if x) or None
    return _store(engine, key, msg.control_id, msg.message_type, digest, text, peer, status,
                  code, ack, detail, subject, when)


def _existing(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(hl7v2_inbox).where(hl7v2_inbox.c.dedupe_key == key)).first()


def _store(engine: Engine, key: str, control_id: str, mtype: str, digest: str, text: str,
           peer: str | None, status: str, code: str, ack: str, detail: str | None,
           subject: str | None, when: str | None) -> str:
    try:
        with write_tx(engine) as conn:
            conn.execute(hl7v2_inbox.insert().values(
                dedupe_key=key[:400], control_id=control_id[:200], message_type=mtype[:20],
                content_sha256=digest, message=text, received_at=_now(),
                peer=(peer or "")[:100] or None, status=status, ack_code=code, ack=ack,
                detail=detail, subject_key=subject, event_time=when, attempts=0))
    except IntegrityError:
        row = _existing(engine, key)
        return row.ack if row is not None else ack
    return ack


INBOX_FILE = "mllp inbox #"
#: a message whose application keeps raising is marked failed after this many attempts
MAX_ATTEMPTS = 3


class InboxAdapter(Hl7v2Adapter):
    """The hl7v2 adapter reading stored inbox rows instead of files."""

    def __init__(self, rows: list[Any], superseded: frozenset[int] | set[int] = frozenset()) -> None:
        self.rows = rows
        #: inbox seqs whose visit state is superseded: mapped without their Encounter
        self.superseded = frozenset(superseded)

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        for row in self.rows:
            yield record_from_text(row.message, f"{INBOX_FILE}{row.seq}")

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        seq = _seq_of(record.location.file)
        return map_message(record.data, ctx, visit_state=seq not in self.superseded)


def _seq_of(file: str) -> int | None:
    return int(file.removeprefix(INBOX_FILE)) if file.startswith(INBOX_FILE) else None


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(hl7v2_inbox).where(
            hl7v2_inbox.c.status == "pending")).scalar_one())


def drain(engine: Engine, settings: Settings, *, source_system: str = "hl7v2",
          limit: int = 200) -> int:
    """Apply up to ``limit`` pending messages in order of arrival; returns how many."""
    with engine.connect() as conn:
        rows = conn.execute(select(hl7v2_inbox).where(hl7v2_inbox.c.status == "pending")
                            .order_by(hl7v2_inbox.c.seq).limit(limit)).all()
        if not rows:
            return 0
        subjects = {r.subject_key for r in rows if r.subject_key}
        latest: dict[str, str] = {}
        if subjects:
            for s, t in conn.execute(
                select(hl7v2_inbox.c.subject_key, func.max(hl7v2_inbox.c.event_time))
                .where(hl7v2_inbox.c.status == "applied",
                       hl7v2_inbox.c.subject_key.in_(subjects))
                .group_by(hl7v2_inbox.c.subject_key)):
                if t:
                    latest[s] = t
    superseded: set[int] = set()
    for r in rows:
        newest = latest.get(r.subject_key or "")
        if r.subject_key and r.event_time and newest and r.event_time < newest:
            superseded.add(r.seq)  # applied, but without its visit state
            continue
        if r.subject_key and r.event_time and (not newest or r.event_time > newest):
            latest[r.subject_key] = r.event_time
    outcome = _apply(engine, settings, list(rows), source_system, superseded)
    now = _now()
    with write_tx(engine) as conn:
        for r in rows:
            status, reason = outcome[r.seq]
            if r.seq in superseded and status == "applied":
                # not "applied": it must never count as the visit's newest state
                status, reason = "superseded", f"{SUPERSEDED_NOTE}; {CONTENT_APPLIED}"
            elif r.seq in superseded and status == "failed":
                reason = f"{SUPERSEDED_NOTE}; {reason}"
            values: dict[str, Any] = {"status": status, "attempts": r.attempts + 1}
            if status != "pending":
                values["applied_at"] = now
            if reason:
                values["detail"] = "; ".join(x for x in (r.detail, reason) if x)
            conn.execute(update(hl7v2_inbox).where(hl7v2_inbox.c.seq == r.seq).values(**values))
    return len(rows)


SUPERSEDED_NOTE = ("visit state superseded: older than a message already applied to the "
                   "same visit, so the Encounter was not changed")
CONTENT_APPLIED = "patient and clinical content (PID, AL1, DG1, OBX, Flags) applied"


def _apply(engine: Engine, settings: Settings, rows: list[Any], source_system: str,
           superseded: set[int] | frozenset[int] = frozenset()) -> dict[int, tuple[str, str | None]]:
    """Run rows through the pipeline: seq -> (applied | failed | pending, reason).
    ``superseded`` rows are mapped without their visit state."""
    from adapters.pipeline import ingest

    try:
        report = ingest(engine, settings, InboxAdapter(rows, superseded), [Path("mllp-inbox")],
                        source_system=source_system)
    except (Unavailable, OperationalError):
        raise  # the store is down: everything stays pending
    except Exception as exc:
        if len(rows) > 1:  # find the message at fault: apply one at a time
            out: dict[int, tuple[str, str | None]] = {}
            for r in rows:
                out.update(_apply(engine, settings, [r], source_system, superseded))
            return out
        r = rows[0]
        if r.attempts + 1 >= MAX_ATTEMPTS:
            return {r.seq: ("failed", f"not applied after {MAX_ATTEMPTS} attempts: "
                                      f"{type(exc).__name__}: {exc}")}
        return {r.seq: ("pending", None)}
    out = {r.seq: ("applied", None) for r in rows}
    for p in report.problems:
        file = p.location.file if p.location is not None else ""
        if p.severity == "error" and file.startswith(INBOX_FILE):
            seq = int(file.removeprefix(INBOX_FILE))
            if out.get(seq, ("",))[0] == "applied":
                out[seq] = ("failed", f"{p.kind}: {p.reason}")
    return out
