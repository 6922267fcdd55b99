"""``exchange consent ...``: validate a sharing policy file, rebuild the consent index.

* ``exchange consent check-policy [FILE]`` validates a policy (default: the configured
  or packaged one) and prints its version and role groups, or the error naming the bad
  field (exit status 1) -- run it before deploying a policy change.
* ``exchange consent reindex`` rebuilds ``consent_fact`` / ``consent_link`` from the
  current versions, needed after changing labels or authoring-organisation settings
  (docs/consent-policy.md, "Changing the policy").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_check(args: argparse.Namespace) -> int:
    from consent.policy import PolicyError, load_policy
    from exchange.settings import Settings

    path = Path(args.file) if args.file else Settings.from_env().consent_policy_path
    try:
        pol = load_policy(path)
    except PolicyError as exc:
        print(f"invalid policy: {exc}", file=sys.stderr)
        return 1
    print(f"policy {pol.version}: valid")
    for g in pol.role_groups:
        print(f"  {g.name}: {g.access}, roles {' '.join(sorted(g.roles))}, "
              f"purposes {' '.join(sorted(g.purposes))}")
    return 0


def _cmd_reindex(args: argparse.Namespace) -> int:
    from consent.facts import reindex_facts
    from consent.policy import load_policy
    from exchange.db.engine import make_engine, write_tx
    from exchange.settings import Settings

    settings = Settings.from_env(database_url=args.database)
    policy = load_policy(settings.consent_policy_path)
    engine = make_engine(settings.database_url)
    try:
        with write_tx(engine) as conn:
            n = reindex_facts(conn, policy)
    finally:
        engine.dispose()
    print(f"consent index rebuilt for {n} resources (policy {policy.version})")
    return 0


def register(subparsers: Any) -> None:
    consent = subparsers.add_parser("consent", help="sharing policy and consent index")
    sub = consent.add_subparsers(dest="consent_command", required=True)
    chk = sub.add_parser("check-policy", help="validate a sharing policy file")
    chk.add_argument("file", nargs="?", help="policy YAML/JSON (default: configured policy)")
    chk.set_defaults(func=_cmd_check)
    rx = sub.add_parser("reindex", help="rebuild the consent index tables")
    rx.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    rx.set_defaults(func=_cmd_reindex)
