"""``exchange mllp [--host H] [--port 2575] [--source-system ODS]``: the live HL7 v2 listener.

Wired into exchange/cli.py through :func:`register` (docs/adapters/hl7v2.md, "MLLP").
"""

from __future__ import annotations

import argparse
import logging
from typing import Any


def _cmd_mllp(args: argparse.Namespace) -> int:
    from adapters.hl7v2.mllp import run
    from exchange.db.engine import make_engine
    from exchange.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env(database_url=args.database)
    engine = make_engine(settings.database_url)
    print(f"MLLP listener on {args.host}:{args.port} -> {settings.database_url} "
          f"(source system {args.source_system})")
    run(engine, settings, host=args.host, port=args.port, source_system=args.source_system)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mllp", help="listen for HL7 v2 messages over MLLP (store, ACK, apply)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2575, help="TCP port (default 2575)")
    p.add_argument("--source-system", default="hl7v2",
                   help="the sending trust's ODS code, e.g. REM (default hl7v2)")
    p.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    p.set_defaults(func=_cmd_mllp)
