"""The MLLP listener: an asyncio TCP server for live hospital HL7 v2 feeds.

MLLP (HL7 v2.5.1 Appendix C, "Minimal Lower Layer Protocol" release 2): each message
is framed ``<VT 0x0B> message <FS 0x1C><CR 0x0D>``. For every complete frame the
listener stores the message durably (adapters/hl7v2/inbox.py) *before* it writes the
ACK back; a connection that breaks mid-frame loses only the unacknowledged partial
message (nothing of it is stored or applied) and the sender re-sends it. If the store
is unavailable no ACK is sent and the connection is closed, so the sender retries.
A worker task drains the inbox in order of arrival through the adapter pipeline.
Bad input (junk between frames, oversize frames, undecodable bytes) never crashes the
listener: it is answered with an AR or discarded and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from adapters.hl7v2.ack import SEGMENT_SEQUENCE_ERROR, build_ack
from adapters.hl7v2.adapter import decode
from adapters.hl7v2.inbox import drain, receive
from exchange.settings import Settings

log = logging.getLogger("exchange.mllp")

START, END, CR = b"\x0b", b"\x1c", b"\x0d"
MAX_FRAME = 16 * 1024 * 1024


def frame(text: str) -> bytes:
    return START + text.encode("utf-8") + END + CR


class MllpServer:
    """Listener + inbox worker. ``await start()``, then ``port``; ``await stop()``."""

    def __init__(self, engine: Engine, settings: Settings, *, host: str = "127.0.0.1",
                 port: int = 2575, source_system: str = "hl7v2", apply: bool = True,
                 poll_seconds: float = 1.0) -> None:
        self.engine, self.settings = engine, settings
        self.host, self.requested_port = host, port
        self.source_system, self.apply, self.poll_seconds = source_system, apply, poll_seconds
        self._server: asyncio.AbstractServer | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self.port: int | None = None
        self._requested = 0  # wait_applied() calls so far
        self._completed = 0  # the newest of them answered by an empty drain
        # database work runs on the listener's own threads, never the loop's shared pool
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mllp")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.apply:
            self._worker = asyncio.create_task(self._work())
        log.info("MLLP listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._pool.shutdown(wait=True)

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def wait_applied(self) -> None:
        """Wait until a drain that started after this call has found the inbox empty."""
        self._requested += 1
        target = self._requested
        self._wake.set()
        while self._completed < target:
            self._idle.clear()
            await self._idle.wait()

    # -- the worker ----------------------------------------------------------------
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()  # before draining: a message stored meanwhile wakes us again
            generation = self._requested
            try:
                n = await loop.run_in_executor(
                    self._pool, lambda: drain(self.engine, self.settings,
                                              source_system=self.source_system))
            except Exception:  # the store may be down: keep the messages, retry later
                log.exception("applying the HL7 v2 inbox failed; will retry")
                n = -1
            if n > 0:
                continue
            if n == 0:
                self._completed = max(self._completed, generation)
                self._idle.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    # -- one connection ------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        buf = bytearray()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    if buf.strip(b"\r\n \x00"):
                        log.warning("connection %s closed mid-message; %d bytes discarded "
                                    "(never acknowledged)", peer, len(buf))
                    return
                buf += chunk
                while True:
                    payload = self._next_frame(buf, peer)
                    if payload is None:
                        break
                    if payload is False:
                        writer.write(frame(build_ack("AR", reason="frame too large",
                                                     error_code=SEGMENT_SEQUENCE_ERROR)))
                        await writer.drain()
                        return
                    ack = await asyncio.get_running_loop().run_in_executor(
                        self._pool, self._receive, payload, peer)
                    if ack is None:
                        return  # not stored: no ACK, close so the sender re-sends
                    writer.write(frame(ack))
                    await writer.drain()
                    self._wake.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("connection %s dropped", peer)
        except Exception:
            log.exception("unexpected error on connection %s", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _next_frame(self, buf: bytearray, peer: str) -> bytes | None | bool:
        """Cut the next complete frame out of ``buf``; None if incomplete, False if too big."""
        start = buf.find(START)
        if start == -1:
            if buf.strip(b"\r\n \x00"):
                log.warning("discarding %d bytes outside an MLLP frame from %s", len(buf), peer)
            buf.clear()
            return None
        if start > 0:
            if buf[:start].strip(b"\r\n \x00"):
                log.warning("discarding %d bytes before an MLLP frame from %s", start, peer)
            del buf[:start]
        end = buf.find(END + CR)
        if end == -1:
            return False if len(buf) > MAX_FRAME else None
        payload = bytes(buf[1:end])
        del buf[: end + 2]
        # a start byte inside the payload means the previous frame was cut short
        inner = payload.rfind(START)
        if inner != -1:
            log.warning("incomplete MLLP frame from %s discarded", peer)
            payload = payload[inner + 1:]
        return payload

    def _receive(self, payload: bytes, peer: str) -> str | None:
        try:
            return receive(self.engine, decode(payload), source_system=self.source_system,
                           peer=peer)
        except Exception:
            log.exception("could not store a message from %s; not acknowledged", peer)
            return None


def run(engine: Engine, settings: Settings, *, host: str, port: int,
        source_system: str) -> None:
    """Run the listener until interrupted (``exchange mllp``)."""
    server = MllpServer(engine, settings, host=host, port=port, source_system=source_system)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve_forever())
