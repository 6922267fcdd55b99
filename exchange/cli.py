"""The ``exchange`` command line (also ``python -m exchange``).

Core commands live here (``db upgrade``, ``serve``, ``load``); each package adds its own
through a ``register(subparsers)`` function (auth: ``clients``/``token``; search:
``search reindex``; audit: ``audit``/``ig-users``; adapters: ``adapters``/``ingest``;
hl7v2: ``mllp``). Environment variables configure (EXCHANGE_*); flags win.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import orjson

from exchange.settings import Settings

PLUGIN_CLIS = (
    "exchange.auth.cli",
    "exchange.search.cli",
    "exchange.audit.cli",
    "consent.cli",
    "adapters.cli",
    "adapters.hl7v2.cli",
)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(database_url=getattr(args, "database", None))


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from exchange.db.migrate import upgrade

    url = settings_from(args).database_url
    upgrade(url)
    print(f"database migrated: {url}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if args.database:
        os.environ["EXCHANGE_DATABASE_URL"] = args.database
    if args.base_url:
        os.environ["EXCHANGE_BASE_URL"] = args.base_url
    elif "EXCHANGE_BASE_URL" not in os.environ:
        os.environ["EXCHANGE_BASE_URL"] = f"http://{args.host}:{args.port}/fhir"
    uvicorn.run(
        "exchange.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from exchange.app import build_services
    from exchange.interactions.bundle import process_bundle
    from exchange.outcome import FhirError
    from exchange.pipeline.context import RequestContext, Requester

    settings = settings_from(args)
    svc = build_services(settings)
    requester = Requester(kind="system", client_id="exchange-cli", scopes=frozenset({"system/*.*"}))
    rc = 0
    for path in args.bundles:
        bundle = orjson.loads(Path(path).read_bytes())
        ctx = RequestContext(requester=requester, method="POST", path="", interaction="transaction",
                             audit_in_transaction=True)
        ctx.gate = svc.gate
        try:
            result = process_bundle(svc, ctx, bundle)
            if svc.audit is not None and not ctx.audited:
                ctx.outcome_status = 200
                svc.audit.record(ctx)
        except FhirError as exc:
            print(f"{path}: rejected: {orjson.dumps(exc.outcome()).decode()}", file=sys.stderr)
            rc = 1
            continue
        print(f"{path}: {len(result.get('entry', []))} entries processed")
    if svc.audit is not None and hasattr(svc.audit, "close"):
        svc.audit.close()
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description="Integrated care record exchange")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply all migrations")
    up.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    up.set_defaults(func=_cmd_db_upgrade)

    serve = sub.add_parser("serve", help="run the FHIR server")
    serve.add_argument("--database")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--base-url", help="public base URL of the FHIR endpoint")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_cmd_serve)

    load = sub.add_parser("load", help="post transaction Bundles through the API write path")
    load.add_argument("bundles", nargs="+")
    load.add_argument("--database")
    load.set_defaults(func=_cmd_load)

    for name in PLUGIN_CLIS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
