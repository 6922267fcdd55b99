"""Loopback helpers for the fault suites: free ports and waiting for a listener."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, attempts: int = 600, pause: float = 0.05) -> bool:
    """True once something accepts connections on 127.0.0.1:port."""
    for _ in range(attempts):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(pause)
    return False
