"""The audit sink: no access without a durable record (issue 7, "Recording").

``AuditSink.record(ctx)`` returns only once the request's AuditEvent is committed to
the database; if it cannot be written it raises :class:`exchange.outcome.Unavailable`
(503) and the caller sends no data. To keep throughput up, one writer thread per process
takes every queued event and appends them all with a single commit (group commit), then
wakes the waiting requests. Several processes may write at once: each batch locks the
chain head in the database (:func:`exchange.audit.chain.lock_head`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

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
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    seq: int | None = None
    callbacks: list[Any] = field(default_factory=list)

    def finish(self, seq: int | None, error: BaseException | None) -> None:
        self.seq, self.error = seq, error
        self.done.set()
        for cb in self.callbacks:
            cb()


class AuditSink:
    """Durable, group-committed audit writes shared by all requests of one process."""

    def __init__(self, engine: Engine, settings: Settings, *, fail_writes: bool = False) -> None:
        self.engine = engine
        self.settings = settings
        self.enabled = settings.audit_enabled
        self.fail_writes = fail_writes
        self.batches = 0  # number of commits made (for tests and the benchmark)
        self.events_written = 0
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- public API ---------------------------------------------------------------
    def record(self, ctx: RequestContext) -> None:
        """Write the AuditEvent for a finished request; returns once it is committed."""
        if not self.enabled:
            return
        self.record_event(event_from_context(ctx))

    async def record_async(self, ctx: RequestContext) -> None:
        """:meth:`record` for async code: waits without blocking the event loop."""
        if not self.enabled:
            return
        pending = self._submit(chain.canonical(event_from_context(ctx)))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        with self._lock:
            pending.callbacks.append(wake)
            already = pending.done.is_set()
        if already:
            wake()
        try:
            await asyncio.wait_for(fut, WAIT_SECONDS)
        except TimeoutError as exc:
            raise Unavailable("The audit log could not record this access in time") from exc
        self._raise_for(pending)

    def record_token_request(self, outcome: int | str, client_id: str | None, detail: str,
                             **kwargs: Any) -> None:
        """Audit a token request or authorisation failure (see :func:`token_event`)."""
        if not self.enabled:
            return
        self.record_event(token_event(outcome, client_id, detail, **kwargs))

    def record_event(self, event: dict[str, Any]) -> int:
        """Append any AuditEvent dict durably; returns its sequence number."""
        pending = self._submit(chain.canonical(event))
        if not pending.done.wait(WAIT_SECONDS):
            raise Unavailable("The audit log could not record this access in time")
        self._raise_for(pending)
        assert pending.seq is not None
        return pending.seq

    def inject_failure(self, on: bool = True) -> None:
        """Make every following write fail (tests prove: 503 and no data)."""
        self.fail_writes = on

    def close(self) -> None:
        """Drain the queue (everything submitted is written) and stop the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    # -- internals ------------------------------------------------------------------
    def _submit(self, content: bytes) -> _Pending:
        pending = _Pending(content)
        with self._lock:
            if self._closed:
                raise Unavailable("The audit log is shut down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
            self._queue.put(pending)
        return pending

    @staticmethod
    def _raise_for(pending: _Pending) -> None:
        if pending.error is not None:
            raise Unavailable("The audit log is unavailable; no data was released") from pending.error

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)

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
            with self._lock:
                for p in batch:
                    p.finish(None, exc)
            return
        if result.checkpoint is not None:
            try:
                keys.advance_witness(self.settings, result.checkpoint["event_count"],
                                     result.checkpoint["head_hash"])
            except OSError as exc:
                log.error("audit witness file not updated: %s", exc)
        with self._lock:
            for p, (seq, _h) in zip(batch, result.events, strict=True):
                p.finish(seq, None)
