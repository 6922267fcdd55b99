"""An HL7 v2 sender and a listener child process for the MLLP fault suite
(HL7 v2.5.1 Appendix C framing; docs/adapters/hl7v2.md, "The MLLP listener")."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from adapters.hl7v2.tables import hl7v2_inbox
from exchange.db.engine import read_tx
from tests.hardening.faults.feed import nhs_number
from tests.hardening.faults.net import free_port, wait_port
from tests.hardening.faults.server import ROOT, child_env, track

START, END = b"\x0b", b"\x1c\r"


def frame(text: str) -> bytes:
    return START + text.encode() + END


def a28(control_id: str, i: int) -> str:
    """ADT^A28 (add person) for test person ``i``: one Patient, keyed by NHS number."""
    return (f"MSH|^~\\&|PAS|REM|EXCHANGE|CITY|20261120080000||ADT^A28^ADT_A05|{control_id}|P|2.4\r"
            f"EVN|A28|20261120080000\r"
            f"PID|1||{nhs_number(450_000 + i)}^^^NHS^NH~RMF{i}^^^REM^MR||FAULTPERSON^NUMBER{i}||19500101|F")


def ack_code(ack: bytes) -> str:
    text = ack.strip(b"\x0b\x1c\r").decode()
    msa = next(s for s in text.split("\r") if s.startswith("MSA"))
    return msa.split("|")[1]


def read_ack(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(END):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


class Sender:
    """One MLLP connection that sends a frame and (normally) reads its ACK."""

    def __init__(self, port: int, *, timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send(self, text: str) -> bytes:
        self.sock.sendall(frame(text))
        return read_ack(self.sock)

    def reset(self) -> None:
        """Drop the connection abruptly (RST), as a crashed sender would."""
        import struct

        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class Listener:
    """``python -m exchange mllp`` as a child process on a free loopback port."""

    def __init__(self, database_url: str, var_dir: Path) -> None:
        self.port = free_port()
        self.env = child_env(database_url, var_dir)
        self.log_path = var_dir / f"mllp-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Listener:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = track(subprocess.Popen(
                [sys.executable, "-m", "exchange", "mllp", "--port", str(self.port), "--source-system", "REM"],
                cwd=str(ROOT), env=self.env, stdout=log, stderr=subprocess.STDOUT))
        if not wait_port(self.port):
            raise RuntimeError(f"MLLP listener did not start: {self.log_path.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def inbox_rows(engine: Engine, prefix: str) -> list:
    with read_tx(engine) as conn:
        return conn.execute(select(hl7v2_inbox).where(hl7v2_inbox.c.control_id.like(f"{prefix}%"))
                            .order_by(hl7v2_inbox.c.seq)).all()


def wait_drained(engine: Engine, prefix: str, *, rounds: int = 1200) -> None:
    """Wait (bounded) until no message with this control-id prefix is still pending."""
    for _ in range(rounds):
        with read_tx(engine) as conn:
            pending = conn.execute(select(func.count()).select_from(hl7v2_inbox).where(
                hl7v2_inbox.c.control_id.like(f"{prefix}%"), hl7v2_inbox.c.status == "pending")).scalar_one()
        if pending == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{pending} messages {prefix}* still pending")
