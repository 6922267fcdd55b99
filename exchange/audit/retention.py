"""The audit retention job (``exchange audit retention --before DATE``; issue 7).

An explicit, documented job, never automatic. In order:

1. pick the oldest contiguous run of events recorded before DATE (seq 1..N of what is
   left), and write them, with their hashes and patient rows, to an archive file
   (JSON Lines, ``var/audit-archive/audit-<first>-<N>.jsonl``), fsynced;
2. in one write transaction holding the chain head lock: sign a *retention checkpoint*
   (count N, hash of event N) with the audit key, insert the retention lease row that
   the append-only triggers look for, delete the events 1..N and their patient rows,
   delete the lease, commit.

``verify`` then accepts that the log starts at N+1 because a signed retention checkpoint
says so, and checks that event N+1 links to the hash in that checkpoint. Someone without
the key cannot forge that checkpoint, so deleting events any other way is detected.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, delete, func, insert, select

from exchange.audit import chain, keys
from exchange.audit.tables import audit_event, audit_event_patient, audit_retention_lease
from exchange.db.engine import JOB, read_tx, write_tx
from exchange.settings import Settings


@dataclass
class RetentionResult:
    removed: int
    first_seq: int | None
    last_seq: int | None
    archive: Path | None

    def summary(self) -> str:
        if not self.removed:
            return "Nothing to remove: no events before that date."
        return (f"Archived and removed events {self.first_seq}..{self.last_seq} "
                f"({self.removed} events) to {self.archive}")


def archive_dir(settings: Settings) -> Path:
    return Path(settings.extra.get("audit_archive_dir", settings.var_dir / "audit-archive"))


def _archive(engine: Engine, path: Path, lo: int, hi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with read_tx(engine, profile=JOB) as conn, open(tmp, "wb") as fh:  # a job: may read millions
        pats: dict[int, list[str]] = {}
        for s, p in conn.execute(select(audit_event_patient.c.seq, audit_event_patient.c.patient_id)
                                 .where(audit_event_patient.c.seq.between(lo, hi))):
            pats.setdefault(s, []).append(p)
        rows = conn.execute(select(audit_event.c.seq, audit_event.c.hash, audit_event.c.prev_hash,
                                   audit_event.c.content)
                            .where(audit_event.c.seq.between(lo, hi)).order_by(audit_event.c.seq))
        for row in rows:
            fh.write(orjson.dumps({
                "seq": row.seq, "hash": row.hash, "prev_hash": row.prev_hash,
                "patients": sorted(pats.get(row.seq, [])),
                "content": base64.b64encode(bytes(row.content)).decode(),
            }) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_retention(engine: Engine, settings: Settings, before: datetime) -> RetentionResult:
    """Archive then remove every event of the oldest run recorded before ``before``."""
    with read_tx(engine, profile=JOB) as conn:  # retention is a job: job time limits throughout
        lo = conn.execute(select(func.min(audit_event.c.seq))).scalar()
        first_kept = conn.execute(select(func.min(audit_event.c.seq))
                                  .where(audit_event.c.recorded >= before)).scalar()
        hi_all = conn.execute(select(func.max(audit_event.c.seq))).scalar()
    if lo is None:
        return RetentionResult(0, None, None, None)
    hi = (first_kept - 1) if first_kept is not None else hi_all
    if hi < lo:
        return RetentionResult(0, None, None, None)
    path = archive_dir(settings) / f"audit-{lo:012d}-{hi:012d}.jsonl"
    _archive(engine, path, lo, hi)
    with write_tx(engine, profile=JOB) as conn:
        chain.lock_head(conn)
        head_n = conn.execute(select(audit_event.c.hash).where(audit_event.c.seq == hi)).scalar_one()
        cp = chain.write_checkpoint(conn, settings, "retention", hi, head_n)
        conn.execute(insert(audit_retention_lease).values(id=1, before_seq=hi))
        conn.execute(delete(audit_event_patient).where(audit_event_patient.c.seq <= hi))
        conn.execute(delete(audit_event).where(audit_event.c.seq <= hi))
        conn.execute(delete(audit_retention_lease))
    keys.advance_witness(settings, cp["event_count"], cp["head_hash"])
    return RetentionResult(hi - lo + 1, lo, hi, path)


@dataclass
class ArchiveCheck:
    ok: bool
    events: int
    first_seq: int | None
    last_seq: int | None
    problem: str | None = None

    def summary(self) -> str:
        if self.ok:
            return f"OK: archive holds events {self.first_seq}..{self.last_seq}, chain intact"
        return f"FAILED: {self.problem}"


def verify_archive(path: Path, engine: Engine | None = None) -> ArchiveCheck:
    """Check an archive file's own chain and, given the database, that its last event is
    the one sealed by a signed retention checkpoint (signatures are checked by verify)."""
    from exchange.audit.chain import event_hash
    from exchange.audit.tables import audit_checkpoint

    count, first, last, prev_hash = 0, None, None, None
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            rec = orjson.loads(line)
            seq, content = rec["seq"], base64.b64decode(rec["content"])
            if last is not None and seq != last + 1:
                return ArchiveCheck(False, count, first, last, f"line {n}: event {last + 1} is missing")
            if prev_hash is not None and rec["prev_hash"] != prev_hash:
                return ArchiveCheck(False, count, first, last, f"line {n}: event {seq} does not link "
                                    "to the event before it")
            if event_hash(seq, rec["prev_hash"], content) != rec["hash"]:
                return ArchiveCheck(False, count, first, last, f"line {n}: event {seq} was modified")
            first = seq if first is None else first
            last, prev_hash, count = seq, rec["hash"], count + 1
    if engine is not None and last is not None:
        with read_tx(engine) as conn:
            sealed = conn.execute(select(audit_checkpoint.c.head_hash).where(
                audit_checkpoint.c.kind == "retention", audit_checkpoint.c.event_count == last)).scalar()
        if sealed != prev_hash:
            return ArchiveCheck(False, count, first, last, f"no retention checkpoint seals event {last} "
                                "with this fingerprint")
    return ArchiveCheck(True, count, first, last)
