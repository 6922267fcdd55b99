"""``exchange search reindex [--type T]``: rebuild the search index (FHIR R4 search.html).

Needed after registering a custom SearchParameter (those stored in the record as
SearchParameter resources are loaded first) or after an upgrade that changes how values
are extracted.
"""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_reindex(args: argparse.Namespace) -> int:
    from exchange.db.engine import make_engine, read_tx
    from exchange.search.indexer import reindex
    from exchange.search.registry import load_custom
    from exchange.settings import Settings

    settings = Settings.from_env(database_url=args.database)
    engine = make_engine(settings.database_url)
    try:
        with read_tx(engine) as conn:
            custom = load_custom(conn)
        done = reindex(engine, args.type)
    finally:
        engine.dispose()
    scope = args.type or "all types"
    print(f"reindexed {done} resources ({scope}); {custom} custom search parameters loaded")
    return 0


def register(subparsers: Any) -> None:
    search = subparsers.add_parser("search", help="search index maintenance")
    sub = search.add_subparsers(dest="search_command", required=True)
    rx = sub.add_parser("reindex", help="rebuild the search index")
    rx.add_argument("--type", help="only this resource type")
    rx.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    rx.set_defaults(func=_cmd_reindex)
