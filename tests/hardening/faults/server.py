"""The exchange as a child process, for crash and outage tests (issue 11, "Faults").

``ServerProcess`` runs ``python -m exchange serve`` on a free 127.0.0.1 port with
``EXCHANGE_*`` settings (authorisation off so a test needs no tokens; consent and audit
on, as in production), waits for ``/healthz``, and can be killed with SIGKILL or
stopped gracefully. ``prepare_database`` migrates a database and creates every table
registered on the shared metadata.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.hardening.faults.net import free_port

ROOT = Path(__file__).resolve().parents[3]
_children: list[subprocess.Popen[bytes]] = []


@atexit.register
def _reap() -> None:
    """Kill any child a failed test left running (by its own pid, nothing else)."""
    for proc in _children:
        if proc.poll() is None:
            proc.kill()


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    _children.append(proc)
    return proc


def prepare_database(url: str) -> None:
    """Migrate ``url`` to head and create any registered table the migrations lack."""
    import adapters.hl7v2.tables  # noqa: F401 - registers the inbox table
    import adapters.tables  # noqa: F401
    import consent.tables  # noqa: F401
    from exchange.db.engine import make_engine
    from exchange.db.metadata import metadata
    from exchange.db.migrate import upgrade

    upgrade(url)
    eng = make_engine(url)
    try:
        metadata.create_all(eng, checkfirst=True)
    finally:
        eng.dispose()


def child_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update({
        "EXCHANGE_DATABASE_URL": database_url,
        "EXCHANGE_VAR_DIR": str(var_dir),
        "EXCHANGE_AUTH_ENABLED": "0",
        "EXCHANGE_CONSENT_ENABLED": "1",
        "EXCHANGE_AUDIT_ENABLED": "1",
        "EXCHANGE_SECRET_KEY": "fault-test-secret",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


class ServerProcess:
    """``python -m exchange serve`` in a child process on a free loopback port."""

    def __init__(self, database_url: str, var_dir: Path, **extra_env: str) -> None:
        self.database_url = database_url
        self.var_dir = var_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.env = child_env(database_url, var_dir, EXCHANGE_BASE_URL=self.base, **extra_env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = var_dir / f"server-{self.port}.log"

    def start(self) -> ServerProcess:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = track(subprocess.Popen(
            [sys.executable, "-m", "exchange", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            cwd=str(ROOT), env=self.env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not come up: {self.log()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_kib(self) -> int:
        """Resident memory of the server process (VmRSS, KiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
