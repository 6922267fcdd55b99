"""Invariants checked after a fault (issue 11, "Faults"): the store is whole, the
access log verifies, and every response a client received has its AuditEvent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from sqlalchemy import Engine, select

from exchange.audit.tables import audit_event
from exchange.db.engine import read_tx
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.settings import Settings
from tests.hardening.faults.server import child_env


def store_problems(engine: Engine) -> list[str]:
    """Every way the version store could be half-written: a current pointer without its
    version, a version chain with a gap, a pointer that is not the newest version."""
    problems: list[str] = []
    with read_tx(engine) as conn:
        versions: dict[str, list[tuple[int, int]]] = {}
        for seq, rid, vid in conn.execute(select(rv.c.seq, rv.c.rid, rv.c.version_id)):
            versions.setdefault(rid, []).append((int(vid), int(seq)))
        current = conn.execute(select(rc.c.rid, rc.c.version_id, rc.c.seq)).all()
    for rid, vid, seq in current:
        chain = sorted(versions.get(rid, []))
        if not chain:
            problems.append(f"{rid}: current pointer without any version")
            continue
        if [v for v, _ in chain] != list(range(1, len(chain) + 1)):
            problems.append(f"{rid}: version ids {[v for v, _ in chain]} have a gap")
        if (int(vid), int(seq)) != chain[-1]:
            problems.append(f"{rid}: current ({vid}, seq {seq}) is not the newest version {chain[-1]}")
    orphans = set(versions) - {r[0] for r in current}
    problems += [f"{rid}: versions without a current pointer" for rid in sorted(orphans)]
    return problems


def settings_for(database_url: str, var_dir: Path) -> Settings:
    """The settings the child server ran with (same audit key, same witness file)."""
    return Settings.from_env(env=child_env(database_url, var_dir))


def audit_verifies(engine: Engine, database_url: str, var_dir: Path) -> tuple[bool, str]:
    from exchange.audit.verify import verify

    result = verify(engine, settings_for(database_url, var_dir))
    return result.ok, result.summary()


def audited_requests(engine: Engine) -> Counter[tuple[str, str]]:
    """(``METHOD path?query`` as sent, HTTP outcome text) of every recorded REST event."""
    seen: Counter[tuple[str, str]] = Counter()
    with read_tx(engine) as conn:
        for (content,) in conn.execute(select(audit_event.c.content).order_by(audit_event.c.seq)):
            event = orjson.loads(bytes(content))
            for entity in event.get("entity", []):
                if entity.get("role", {}).get("code") == "24" and "description" in entity:
                    seen[(entity["description"], event.get("outcomeDesc", ""))] += 1
    return seen
