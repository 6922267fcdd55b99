"""MLLP faults against the real listener process (issue 11, "Faults").

Adds to tests/adapters/hl7v2/test_hl7v2_ingest_mllp.py (which covers a connection
broken mid-message, a duplicate MSH-10 and eight concurrent one-message senders over an
in-process listener): here ``exchange mllp`` runs as a child process on SQLite and
PostgreSQL. Proves: a sender that never reads its ACKs neither blocks other senders
nor loses what was stored; a connection reset mid-message stores and applies nothing
of the partial frame and its re-send is applied once; many concurrent senders, each
message also re-sent at the same moment on another connection, get AA for everything
and every message is applied exactly once; and a listener SIGKILLed right after
acknowledging loses nothing: after a restart every acknowledged message is applied.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.identity import shared_patient_id
from exchange.db.engine import make_engine, read_tx
from exchange.db.tables import resource_version as rv
from tests.hardening.faults.feed import nhs_number
from tests.hardening.faults.mllp_peer import (
    Listener,
    Sender,
    a28,
    ack_code,
    frame,
    inbox_rows,
    wait_drained,
)
from tests.hardening.faults.server import prepare_database

pytestmark = pytest.mark.slow
_next = iter(range(10_000))


@pytest.fixture(scope="module")
def prepared(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    prepare_database(db_url)
    return db_url, tmp_path_factory.mktemp("mllp-var")


@pytest.fixture(scope="module")
def store(prepared: tuple[str, Path]):  # noqa: ANN201
    eng = make_engine(prepared[0])
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def listener(prepared: tuple[str, Path]):  # noqa: ANN201
    lst = Listener(*prepared).start()
    yield lst
    lst.stop()


def _people(n: int) -> list[int]:
    return [next(_next) for _ in range(n)]


def _patient_versions(engine, people: list[int]) -> dict[int, int]:  # noqa: ANN001
    ids = {shared_patient_id(nhs_number(450_000 + i)): i for i in people}
    with read_tx(engine) as conn:
        rows = conn.execute(select(rv.c.res_id).where(rv.c.res_type == "Patient", rv.c.res_id.in_(list(ids))))
        counts = dict.fromkeys(people, 0)
        for (rid,) in rows:
            counts[ids[rid]] += 1
    return counts


def _applied_once(engine, prefix: str, people: list[int]) -> None:  # noqa: ANN001
    rows = inbox_rows(engine, prefix)
    per_id: dict[str, int] = {}
    for r in rows:
        per_id[r.control_id] = per_id.get(r.control_id, 0) + 1
    assert all(n == 1 for n in per_id.values()), {k: n for k, n in per_id.items() if n != 1}
    assert all(r.status == "applied" for r in rows), [(r.control_id, r.status, r.detail) for r in rows
                                                      if r.status != "applied"]
    versions = _patient_versions(engine, people)
    assert all(n == 1 for n in versions.values()), versions


def _settled(listener: Listener, engine, prefix: str) -> list:  # noqa: ANN001
    """The rows of ``prefix`` once the listener has finished with the closed connection:
    the count is the same before and after a round trip of another message."""
    before: list = []
    for _ in range(50):
        wait_drained(engine, prefix)
        before = inbox_rows(engine, prefix)
        probe = Sender(listener.port)
        try:
            probe.send(a28(f"PROBE{uuid.uuid4().hex[:8]}", 9999))
        finally:
            probe.close()
        wait_drained(engine, prefix)
        if len(inbox_rows(engine, prefix)) == len(before):
            return before
    raise AssertionError("the listener kept storing messages of a closed connection")


def _wait_stalled(engine, prefix: str, total: int) -> None:  # noqa: ANN001
    """Wait until the mute sender's stream stops growing in the inbox (or is all in)."""
    seen, same = -1, 0
    while same < 20:
        n = len(inbox_rows(engine, prefix))
        if n >= total:
            return
        same = same + 1 if n == seen else 0
        seen = n
        time.sleep(0.05)


def test_sender_that_never_reads_its_acks(listener: Listener, store) -> None:  # noqa: ANN001
    prefix = f"NR{uuid.uuid4().hex[:6]}-"
    people = _people(150)
    mute = socket.create_connection(("127.0.0.1", listener.port), timeout=30)
    mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    done = threading.Event()

    def flood() -> None:
        with contextlib.suppress(OSError):  # the listener stopped reading: its ACKs pile up unread
            mute.sendall(b"".join(frame(a28(f"{prefix}{i}", i)) for i in people))
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    _wait_stalled(store, prefix, len(people))
    # the listener has stopped reading the mute sender; another sender is served normally
    other_prefix = f"OK{uuid.uuid4().hex[:6]}-"
    others = _people(5)
    polite = Sender(listener.port)
    try:
        acks = [polite.send(a28(f"{other_prefix}{i}", i)) for i in others]
    finally:
        polite.close()
    assert [ack_code(a) for a in acks] == ["AA"] * len(others)
    mute.close()  # never read a byte
    done.wait(60)
    stored = _settled(listener, store, prefix)
    wait_drained(store, other_prefix)
    print(f"mute sender: {len(stored)} of {len(people)} frames stored before it hung up")
    assert stored, "nothing of the mute sender's stream was stored"
    _applied_once(store, prefix, [int(r.control_id.removeprefix(prefix)) for r in stored])
    _applied_once(store, other_prefix, others)


def test_reset_mid_message_then_resend_applies_once(listener: Listener, store) -> None:  # noqa: ANN001
    prefix = f"MID{uuid.uuid4().hex[:6]}-"
    first, second = _people(2)
    whole, cut = a28(f"{prefix}{first}", first), a28(f"{prefix}{second}", second)
    broken = Sender(listener.port)
    broken.sock.sendall(frame(whole) + frame(cut)[: len(cut) // 2])
    stored_ack = broken.sock.recv(65536)  # the complete first frame is stored and acknowledged
    broken.reset()
    assert ack_code(stored_ack) == "AA"
    resend = Sender(listener.port)
    try:
        again = [resend.send(whole), resend.send(cut)]
    finally:
        resend.close()
    assert again[0] == stored_ack  # a repeat: the stored ACK, not a second message
    assert ack_code(again[1]) == "AA"
    wait_drained(store, prefix)
    _applied_once(store, prefix, [first, second])


def test_concurrent_senders_with_simultaneous_resends(listener: Listener, store) -> None:  # noqa: ANN001
    prefix = f"CC{uuid.uuid4().hex[:6]}-"
    senders, per_sender = 8, 10
    people = _people(senders * per_sender)
    plan = [people[s * per_sender:(s + 1) * per_sender] for s in range(senders)]

    def run(s: int) -> list[tuple[int, bytes]]:
        out = []
        conn = Sender(listener.port)
        try:
            # sender s sends its own messages and, interleaved, its neighbour's again
            mine, theirs = plan[s], plan[(s + 1) % senders]
            for a, b in zip(mine, theirs, strict=True):
                out.append((a, conn.send(a28(f"{prefix}{a}", a))))
                out.append((b, conn.send(a28(f"{prefix}{b}", b))))
        finally:
            conn.close()
        return out

    with ThreadPoolExecutor(max_workers=senders) as pool:
        results = [r for rs in pool.map(run, range(senders)) for r in rs]
    assert all(ack_code(a) == "AA" for _, a in results)
    by_person: dict[int, set[bytes]] = {}
    for i, ack in results:
        by_person.setdefault(i, set()).add(ack)
    assert all(len(acks) == 1 for acks in by_person.values())  # both sends got the one stored ACK
    wait_drained(store, prefix)
    _applied_once(store, prefix, people)


def test_listener_killed_right_after_acknowledging(prepared, store) -> None:  # noqa: ANN001
    prefix = f"KL{uuid.uuid4().hex[:6]}-"
    people = _people(40)
    lst = Listener(*prepared).start()
    sender = Sender(lst.port)
    try:
        acked = [i for i in people if ack_code(sender.send(a28(f"{prefix}{i}", i))) == "AA"]
    finally:
        lst.kill()  # no time to apply what it has just acknowledged
        sender.close()
    assert acked == people
    restarted = Listener(*prepared).start()
    try:
        wait_drained(store, prefix)
    finally:
        restarted.stop()
    _applied_once(store, prefix, acked)
