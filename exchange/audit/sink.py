"""The audit sink: no access without a durable record (issue 7, "Recording").

``AuditSink.record(ctx)`` returns only once the request's AuditEvent is committed to
the database; if it cannot be written it raises :class:`exchange.outcome.Unavailable`
(503) and the caller sends no data.

Group commit without a writer thread (leader / follower): a request queues its event
and, if no commit is under way, becomes the leader: it takes every queued event and
appends them all in one transaction, then wakes the others. Requests that arrive while
a commit is under way wait; when it ends, one of those still waiting leads the next
commit for all of them. Every event is written by a thread that is waiting for it, so
nothing queued is left unwritten, and no hand-off to another thread is paid per
request. Several processes may write at once: each batch locks the chain head in the
database (:func:`exchange.audit.chain.lock_head`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from exchange.audit import chain, keys
from exchange.audit.event import event_from_context, token_event
from exchange.db.engine import write_tx
from exchange.outcome import Unavailable
from exchange.pipeline.context import RequestContext
from exchange.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 500
WAIT_SECONDS = 30.0


class InjectedAuditFailure(RuntimeError):
    """Raised inside the writer when a test has asked writes to fail."""


@dataclass
class _Pending:
    content: bytes
    done: bool = False
    error: BaseException | None = None
    seq: int | None = None


class AuditSink:
    """Durable, group-committed audit writes shared by all requests of one process."""

    def __init__(self, engine: Engine, settings: Settings, *, fail_writes: bool = False) -> None:
        self.engine = engine
        self.settings = settings
        self.enabled = settings.audit_enabled
        self.fail_writes = fail_writes
        self.batches = 0  # number of commits made (for tests and the benchmark)
        self.events_written = 0
        self._queue: deque[_Pending] = deque()
        self._closed = False
        self._leading = False  # a commit is under way
        self._turn = threading.Condition(threading.Lock())

    # -- public API ---------------------------------------------------------------
    def record(self, ctx: RequestContext) -> None:
        """Write the AuditEvent for a finished request; returns once it is committed."""
        if not self.enabled:
            return
        self.record_event(event_from_context(ctx))

    async def record_async(self, ctx: RequestContext) -> None:
        """:meth:`record` for async code: waits in a worker thread, not on the event loop."""
        if not self.enabled:
            return
        pending = self._submit(chain.canonical(event_from_context(ctx)))
        await asyncio.get_running_loop().run_in_executor(None, self._await, pending)

    def record_token_request(self, outcome: int | str, client_id: str | None, detail: str,
                             **kwargs: Any) -> None:
        """Audit a token request or authorisation failure (see :func:`token_event`)."""
        if not self.enabled:
            return
        self.record_event(token_event(outcome, client_id, detail, **kwargs))

    def record_event(self, event: dict[str, Any]) -> int:
        """Append any AuditEvent dict durably; returns its sequence number."""
        pending = self._submit(chain.canonical(event))
        self._await(pending)
        assert pending.seq is not None
        return pending.seq

    def append_in(self, conn: Connection, ctx: RequestContext, status: int) -> chain.Appended | None:
        """Append the AuditEvent of a write inside the write's own transaction, so that the
        write and its record commit together or not at all (a write is never acknowledged
        unrecorded, nor refused with 503 after it was stored). Call :meth:`committed` after
        the commit. Raises Unavailable (and so rolls the write back) if it cannot append."""
        if not self.enabled:
            return None
        ctx.outcome_status = status
        try:
            if self.fail_writes:
                raise InjectedAuditFailure("audit write failure injected")
            return chain.append_events(conn, self.settings, [chain.canonical(event_from_context(ctx))])
        except Exception as exc:  # noqa: BLE001 - any failure: nothing is written
            log.error("audit append within the write failed: %s", exc)
            raise Unavailable("The audit log is unavailable; nothing was written") from exc

    def committed(self, ctx: RequestContext, appended: chain.Appended | None) -> None:
        """After the commit of a write whose event :meth:`append_in` appended."""
        if appended is None:
            return
        ctx.audited = True
        self.batches += 1
        self.events_written += 1
        if appended.checkpoint is not None:
            try:
                keys.advance_witness(self.settings, appended.checkpoint["event_count"],
                                     appended.checkpoint["head_hash"])
            except OSError as exc:
                log.error("audit witness file not updated: %s", exc)

    def inject_failure(self, on: bool = True) -> None:
        """Make every following write fail (tests prove: 503 and no data)."""
        self.fail_writes = on

    def close(self) -> None:
        """Refuse new events, write every event already queued, and return."""
        with self._turn:
            if self._closed:
                return
            self._closed = True
        while True:
            with self._turn:
                while self._leading:
                    self._turn.wait()
                if not self._queue:
                    return
                self._leading = True
            self._lead()

    # -- internals ------------------------------------------------------------------
    def _submit(self, content: bytes) -> _Pending:
        pending = _Pending(content)
        with self._turn:
            if self._closed:
                raise Unavailable("The audit log is shut down")
            self._queue.append(pending)
        return pending

    def _await(self, pending: _Pending) -> None:
        """Return once ``pending`` is written, leading commits while none is under way."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            with self._turn:
                while self._leading and not pending.done:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Unavailable("The audit log could not record this access in time")
                    self._turn.wait(remaining)
                if pending.done:
                    break
                # queued and not yet taken (a leader takes events under this lock): lead
                self._leading = True
            self._lead()
        if pending.error is not None:
            raise Unavailable("The audit log is unavailable; no data was released") from pending.error

    def _lead(self) -> None:
        """Write up to MAX_BATCH queued events in one commit, then hand the lead back."""
        try:
            with self._turn:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if batch:
                self._write(batch)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()

    def _write(self, batch: list[_Pending]) -> None:
        try:
            if self.fail_writes:
                raise InjectedAuditFailure("audit write failure injected")
            with write_tx(self.engine) as conn:
                result = chain.append_events(conn, self.settings, [p.content for p in batch])
            self.batches += 1
            self.events_written += len(batch)
        except BaseException as exc:  # every waiter must learn of the failure
            log.error("audit write failed: %s", exc)
            with self._turn:
                for p in batch:
                    p.error, p.done = exc, True
            return
        if result.checkpoint is not None:
            try:
                keys.advance_witness(self.settings, result.checkpoint["event_count"],
                                     result.checkpoint["head_hash"])
            except OSError as exc:
                log.error("audit witness file not updated: %s", exc)
        with self._turn:
            for p, (seq, _h) in zip(batch, result.events, strict=True):
                p.seq, p.done = seq, True
