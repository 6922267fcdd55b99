"""A private, throw-away PostgreSQL cluster for fault tests (issue 11, "Faults").

The machine's shared PostgreSQL on 5432 is never stopped: other suites run against it
in parallel. This manager runs ``initdb`` into a fresh directory under /tmp, starts the
cluster with ``pg_ctl`` on a free 127.0.0.1 port with trust authentication, and can
stop it (fast or immediate, i.e. a crash) and start it again at will. As root the
binaries run as the ``postgres`` OS user (``initdb`` refuses root).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.hardening.faults.net import free_port


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    """Why a private cluster cannot be made here (None when it can)."""
    if pg_bin_dir() is None:
        return "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' OS user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root but runuser is not available"
    return None


class PrivateCluster:
    """One PostgreSQL cluster owned by a test: ``start()``, ``stop()``, ``destroy()``."""

    def __init__(self) -> None:
        bindir = pg_bin_dir()
        if bindir is None:
            raise RuntimeError(missing_reason() or "no PostgreSQL binaries")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="exch-faults-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        # fsync and full_page_writes off only trade away safety against an OS crash, which
        # these tests never cause; synchronous_commit must stay on, or a COMMIT the exchange
        # acknowledged can vanish in a "pg_ctl stop -m immediate" (it did, once, in CI).
        conf = (f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\nsynchronous_commit = on\n"
                "full_page_writes = off\nmax_connections = 60\nshared_buffers = 32MB\n")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(conf)
        atexit.register(self.destroy)  # never leave a cluster behind, even after a failure

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> str:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stdout[-800:]} {out.stderr[-800:]}")
        return out.stdout

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients and shut down; ``immediate``: a crash (no checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                            isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
        return self.database_url(name)

    def destroy(self) -> None:
        if not self.data.exists():
            return
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
