"""The server secret used to sign paging cursors and console cookies.

Taken from ``EXCHANGE_SECRET_KEY`` or generated once under ``var/secret.key`` (0600), so
that every worker process and every restart signs with the same key (design habit 8).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path

from exchange.settings import Settings


@lru_cache(maxsize=8)
def _from_file(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, p)  # atomic: the first worker to get here wins
        tmp.unlink(missing_ok=True)
    return p.read_text().strip().encode()


def server_secret(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    return _from_file(str(settings.var_dir / "secret.key"))
