"""End to end on SQLite and PostgreSQL: file ingest through the pipeline, and the MLLP
listener over a real socket on 127.0.0.1 (broken connection, duplicate MSH-10,
concurrent senders, out-of-order messages)."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

from adapters.hl7v2 import Hl7v2Adapter
from adapters.hl7v2.inbox import drain, receive
from adapters.hl7v2.mllp import MllpServer, frame
from adapters.hl7v2.tables import hl7v2_inbox
from adapters.identity import shared_patient_id, stored_id
from adapters.pipeline import ingest
from exchange.db.tables import resource_current, resource_version
from exchange.repository.store import read_current

SAMPLES = Path(__file__).resolve().parents[3] / "adapters" / "hl7v2" / "samples"


def _current(engine, rtype: str, rid: str) -> dict | None:  # noqa: ANN001
    with engine.connect() as conn:
        cur = read_current(conn, rtype, rid)
    return None if cur is None or cur.deleted else cur.data


def _versions(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return len(conn.execute(select(resource_version.c.seq)).all())


def test_file_ingest_and_idempotent_rerun(engine, settings) -> None:  # noqa: ANN001
    report = ingest(engine, settings, Hl7v2Adapter(), [SAMPLES], source_system="REM")
    assert report.rejected == 0, [p.to_dict() for p in report.problems if p.severity == "error"]
    assert report.read == 15 and report.created > 20
    joan = _current(engine, "Patient", shared_patient_id("9990000425"))
    assert joan is not None
    flag = _current(engine, "Flag", stored_id("REM", "obs-enc-V100001-RESUS-20261112143000", "Flag"))
    assert flag["code"]["coding"][0]["code"] == "450475007"
    assert flag["subject"]["reference"] == f"Patient/{joan['id']}"
    cancelled = _current(engine, "Encounter", stored_id("REM", "enc-V300009", "Encounter"))
    assert cancelled["status"] == "entered-in-error"
    nolan = _current(engine, "Encounter", stored_id("REM", "enc-V200002", "Encounter"))
    assert nolan["status"] == "finished" and nolan["period"]["end"].startswith("2026-11-09")
    before = _versions(engine)
    again = ingest(engine, settings, Hl7v2Adapter(), [SAMPLES], source_system="REM")
    assert again.created == 0 and again.updated == 0 and again.rejected == 0
    assert _versions(engine) == before


def test_defective_feed_reports_each_defect_with_its_place(engine, settings, tmp_path) -> None:  # noqa: ANN001
    feed = tmp_path / "defects.hl7"
    feed.write_text(
        "MSH|^~\\&|PAS|REM|X|Y|20261101||ADT^A28|D1|P|2.4\nPID|1||RM7^^^REM^MR~9990000425^^^NHS^NH||WHITFIELD^JOAN\n\n"
        "MSH|^~\\&|PAS|REM|X|Y|20261101||ADT^A28|D2|P|2.4\nPID|1||\n\n"
        "MSH|^~\\&|PAS|REM|X|Y|20261101||ADT^A28|D3|P|2.4\nP?D|broken\n")
    report = ingest(engine, settings, Hl7v2Adapter(), [feed], source_system="REMTEST")
    errors = {p.location.message_id: p for p in report.problems if p.severity == "error"}
    assert set(errors) == {"D2", "D3"}
    assert errors["D2"].element == "PID-3" and errors["D2"].location.line == 4
    assert errors["D3"].location.line == 8 and "malformed" in errors["D3"].reason
    assert report.rejected == 2


ADT = ("MSH|^~\\&|PAS|REM|EXCHANGE|CITY|{ts}||ADT^{ev}^ADT_A01|{cid}|P|2.4\r"
       "EVN|{ev}|{ts}\rPID|1||9990000441^^^NHS^NH~RM2345678^^^REM^MR||NOLAN^PETER||19480723|M\r"
       "PV1|1|I|W9^B1^1^REM||||C5678901^PRICE^HELEN||||||||||||V900001^^^REM^VN"
       "{pad}|||||||||||||||||||||||||20261120080000{disch}")


def adt(cid: str, ev: str, ts: str, discharge: str = "") -> str:
    return ADT.format(cid=cid, ev=ev, ts=ts, pad="", disch=f"|{discharge}" if discharge else "")


def _ack_code(ack: bytes) -> str:
    text = ack.strip(b"\x0b\x1c\r").decode()
    msa = next(s for s in text.split("\r") if s.startswith("MSA"))
    return msa.split("|")[1]


def _send(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        buf = b""
        while not buf.endswith(b"\x1c\r"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def test_mllp_listener_over_a_real_socket(engine, settings) -> None:  # noqa: ANN001
    clients = ThreadPoolExecutor(max_workers=16)

    async def send(port: int, payload: bytes) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(clients, _send, port, payload)

    async def scenario() -> None:
        server = MllpServer(engine, settings, host="127.0.0.1", port=0, source_system="REM",
                            poll_seconds=0.05)
        await server.start()
        port = server.port
        try:
            # 1. a connection broken mid-message: nothing stored, nothing acknowledged
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"\x0b" + adt("MLLP-BROKEN", "A01", "20261120080000").encode()[:60])
            # 2. admit, then duplicate of the same MSH-10: the same ACK, applied once
            first = await send(port, frame(adt("MLLP-1", "A01", "20261120080000")))
            repeat = await send(port, frame(adt("MLLP-1", "A01", "20261120080000")))
            assert _ack_code(first) == "AA" and first == repeat
            # the same MSH-10 reused for different content is kept as a message of its own
            clash = await send(port, frame(adt("MLLP-1", "A08", "20261120090000")))
            assert _ack_code(clash) == "AA" and clash != first
            assert await send(port, frame(adt("MLLP-1", "A08", "20261120090000"))) == clash
            # 3. concurrent senders, one of them out of order (old A01 after the discharge)
            msgs = [adt("MLLP-3", "A03", "20261122100000", "20261122100000")]
            acks = await asyncio.gather(*[send(port, frame(m)) for m in msgs])
            await server.wait_applied()
            late = await send(port, frame(adt("MLLP-2", "A08", "20261121090000")))
            bad = await send(port, frame(
                "MSH|^~\\&|PAS|REM|X|Y|1||ADT^A01|MLLP-4|P|2.4\rPID|1||"))
            junk = await send(port, b"garbage\x0bnot hl7 at all\x1c\r")
            many = await asyncio.gather(*[
                send(port, frame(
                    f"MSH|^~\\&|PAS|REM|X|Y|20261120||ADT^A31|MLLP-C{i}|P|2.4\r"
                    f"PID|1||RMC{i}^^^REM^MR||PERSON^NUMBER{i}"))
                for i in range(8)])
            await server.wait_applied()
        finally:
            await server.stop()
        assert all(_ack_code(a) == "AA" for a in acks + many + [late])
        assert _ack_code(bad) == "AE" and b"PID-3" in bad
        assert _ack_code(junk) == "AR"

    asyncio.run(scenario())
    clients.shutdown()
    with engine.connect() as conn:
        all_rows = conn.execute(select(hl7v2_inbox).order_by(hl7v2_inbox.c.seq)).all()
    rows = {r.control_id: r for r in reversed(all_rows)}  # the first of each control id
    assert "MLLP-BROKEN" not in rows
    reused = [r for r in all_rows if r.control_id == "MLLP-1"]
    assert len(reused) == 2 and "used before" in reused[1].detail
    assert rows["MLLP-1"].status == "applied" and rows["MLLP-3"].status == "applied"
    assert rows["MLLP-2"].status == "superseded"
    assert rows["MLLP-4"].status == "error"
    assert all(rows[f"MLLP-C{i}"].status == "applied" for i in range(8))
    enc = _current(engine, "Encounter", stored_id("REM", "enc-V900001", "Encounter"))
    assert enc["status"] == "finished"  # the late, older A08 did not roll the visit back
    with engine.connect() as conn:
        versions = conn.execute(select(resource_current.c.version_id).where(
            resource_current.c.res_id == enc["id"])).scalar_one()
    assert versions == 2  # admitted once (duplicate not re-applied), discharged once


def test_receive_is_durable_before_apply_and_drain_is_idempotent(engine, settings) -> None:  # noqa: ANN001
    ack = receive(engine, adt("DUR-1", "A01", "20261125080000").replace("V900001", "V900002"),
                  source_system="REM")
    assert "|AA|DUR-1" in ack
    with engine.connect() as conn:
        row = conn.execute(select(hl7v2_inbox).where(hl7v2_inbox.c.control_id == "DUR-1")).one()
    assert row.status == "pending" and row.ack == ack
    assert drain(engine, settings, source_system="REM") == 1
    assert drain(engine, settings, source_system="REM") == 0
    assert receive(engine, adt("DUR-1", "A01", "20261125080000").replace("V900001", "V900002"),
                   source_system="REM") == ack


def test_a40_merge_links_the_shared_patients(engine, settings, tmp_path) -> None:  # noqa: ANN001
    feed = tmp_path / "merge.hl7"
    feed.write_text(
        "MSH|^~\\&|PAS|REMM|X|Y|20261101||ADT^A28|G1|P|2.4\n"
        "PID|1||RMA1^^^REM^MR~9990000018^^^NHS^NH||TESTER^ANNE||19500101|F\n\n"
        "MSH|^~\\&|PAS|REMM|X|Y|20261101||ADT^A28|G2|P|2.4\n"
        "PID|1||RMB2^^^REM^MR~9990000026^^^NHS^NH||TESTER^ANN||19500101|F\n\n"
        "MSH|^~\\&|PAS|REMM|X|Y|20261102||ADT^A40^ADT_A39|G3|P|2.4\nEVN|A40|20261102\n"
        "PID|1||RMA1^^^REM^MR~9990000018^^^NHS^NH||TESTER^ANNE||19500101|F\nMRG|RMB2^^^REM^MR\n")
    report = ingest(engine, settings, Hl7v2Adapter(), [feed], source_system="REMM")
    assert report.rejected == 0, [p.to_dict() for p in report.problems]
    survivor = _current(engine, "Patient", shared_patient_id("9990000018"))
    merged = _current(engine, "Patient", shared_patient_id("9990000026"))
    assert {"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"} in survivor["link"]
    assert merged["link"][0]["type"] == "replaced-by" and merged["active"] is False


PUBLIC = Path("/work/shared/samples/hl7v2")


def test_every_public_sample_gets_an_ack_naming_it(engine) -> None:  # noqa: ANN001
    from adapters.hl7v2.adapter import decode

    files = sorted(PUBLIC.glob("*.hl7")) if PUBLIC.is_dir() else []
    codes = {}
    for f in files:
        text = decode(f.read_bytes())
        ack = receive(engine, text, source_system="PUBLIC", peer=f.name)
        msa = next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")
        control = next(line for line in text.splitlines() if line.startswith("MSH")).split("|")[9]
        assert msa[2] == control
        codes[f.name] = (msa[1], msa[3] if len(msa) > 3 else "")
    if files:
        assert codes["ADT-A01-01.hl7"][0] == "AA" and codes["ORU-R01-01.hl7"][0] == "AA"
        assert codes["ADT-A29-01.hl7"][0] == "AR" and "not supported" in codes["ADT-A29-01.hl7"][1]
        assert codes["MDM-T02-01.hl7"][0] == "AE"
        assert codes["MDM-T02-01.hl7"][1].startswith("the document has no content")


def test_no_ack_when_the_message_cannot_be_stored(tmp_path, settings) -> None:  # noqa: ANN001
    from exchange.db.engine import make_engine

    unmigrated = make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")

    async def scenario() -> bytes:
        server = MllpServer(unmigrated, settings, port=0, apply=False)
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, _send, server.port, frame(adt("NOSTORE-1", "A01", "20261120080000")))
        finally:
            await server.stop()

    assert asyncio.run(scenario()) == b""  # connection closed, nothing acknowledged
    unmigrated.dispose()


def test_a_message_that_keeps_failing_does_not_block_the_inbox(engine, settings, monkeypatch) -> None:  # noqa: ANN001
    import adapters.pipeline as pipeline

    real = pipeline.ingest

    def flaky(engine_, settings_, adapter, paths, **kw):  # noqa: ANN001, ANN003, ANN202
        if any("POISON" in r.message for r in adapter.rows):
            raise RuntimeError("pipeline bug")
        return real(engine_, settings_, adapter, paths, **kw)

    monkeypatch.setattr(pipeline, "ingest", flaky)
    for cid in ("POISON-1", "OK-1"):
        assert "|AA|" in receive(engine, adt(cid, "A08", "20261126080000").replace(
            "V900001", f"V-{cid}"), source_system="REM")
    for _ in range(3):
        drain(engine, settings, source_system="REM")
    with engine.connect() as conn:
        status = {r.control_id: (r.status, r.attempts, r.detail) for r in conn.execute(
            select(hl7v2_inbox).where(hl7v2_inbox.c.control_id.in_(["POISON-1", "OK-1"])))}
    assert status["OK-1"][0] == "applied"
    assert status["POISON-1"][:2] == ("failed", 3) and "pipeline bug" in status["POISON-1"][2]
