"""Freeze a private PostgreSQL cluster (SIGSTOP), for the hung-database fault tests.

A stopped process answers nothing - no query result, no cancel request, no new
connection - while the kernel still completes TCP handshakes and answers keepalives:
what a client sees of a server stuck on a dead disk or a frozen host. Only the private
cluster's postmaster and the backends of one ``application_name`` are stopped, and
``frozen`` always continues them (SIGCONT), even when the test fails.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg

from tests.hardening.faults.pgcluster import PrivateCluster


def postmaster_pid(cluster: PrivateCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().splitlines()[0])


def backend_pids(cluster: PrivateCluster, application_name: str) -> list[int]:
    with psycopg.connect(cluster.url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                            (application_name,)).fetchall()
    return [int(r[0]) for r in rows]


@contextmanager
def frozen(cluster: PrivateCluster, application_name: str) -> Iterator[list[int]]:
    """SIGSTOP the cluster's postmaster and the named application's backends until exit."""
    pids = [*backend_pids(cluster, application_name), postmaster_pid(cluster)]
    stopped: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield pids
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
