"""``exchange adapters ...`` and ``exchange ingest ...`` (docs/adapters.md, "Command line").

* ``exchange adapters list [--json]``: every adapter found (entry points + built-ins);
* ``exchange adapters new NAME [--dir DIR]``: scaffold a new adapter package;
* ``exchange adapters unmatched [--all] [--json]``: the review queue of unmatched people;
* ``exchange adapters resolve ENTRY PATIENT_ID``: a reviewer's decision (merges);
* ``exchange ingest ADAPTER PATH... [--dry-run] [--report FILE] [--source-system ID]
  [--database URL]``: run a feed with a progress bar; exit 0 when every record went in,
  2 when some were rejected (all listed in the report), 1 on failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from exchange.settings import Settings

    return Settings.from_env(database_url=getattr(args, "database", None))


def _cmd_list(args: argparse.Namespace) -> int:
    from adapters.registry import available

    infos = available()
    if args.json:
        print(orjson.dumps([i.__dict__ for i in infos], option=orjson.OPT_INDENT_2).decode())
        return 0
    for info in infos:
        if info.error:
            print(f"{info.name:<14} UNAVAILABLE  {info.target}: {info.error}")
        else:
            print(f"{info.name:<14} v{info.version:<8} {info.description}  [{info.origin}: {info.target}]")
    return 0


def _cmd_new(args: argparse.Namespace) -> int:
    from adapters.scaffold import create

    try:
        root = create(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created {root}")
    print(f"next: cd {root} && pip install -e . && pytest   (then: exchange ingest {args.name} sample/)")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from adapters.pipeline import ingest
    from adapters.registry import UnknownAdapter, load
    from adapters.report import ProgressBar
    from exchange.db.engine import make_engine

    try:
        adapter = load(args.adapter)
    except UnknownAdapter as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 1
    settings = _settings(args)
    engine = make_engine(settings.database_url)
    bar = None if args.quiet else ProgressBar()
    report = None
    try:
        report = ingest(engine, settings, adapter, [Path(p) for p in args.paths], source_system=args.source_system,
                        dry_run=args.dry_run, progress=bar, batch_resources=args.batch)
    except DBAPIError as exc:
        if "adapter_run" in str(exc) or "resource_current" in str(exc):
            print(f"error: the database at {settings.database_url} has no exchange schema: "
                  "run `exchange db upgrade` first", file=sys.stderr)
            return 1
        raise
    finally:
        if bar:
            bar.close()
        engine.dispose()
    if args.report:
        report.write(Path(args.report))
    print(report.summary())
    for p in report.problems[: args.show]:
        print(f"  {p.severity:<7} {p.location or '-'}: {p.element + ': ' if p.element else ''}{p.reason}")
    if len(report.problems) > args.show:
        print(f"  ... {len(report.problems) - args.show} more (see --report)")
    return 2 if report.rejected else 0


def _cmd_unmatched(args: argparse.Namespace) -> int:
    from adapters.unmatched import list_entries
    from exchange.db.engine import make_engine, read_tx

    engine = make_engine(_settings(args).database_url)
    with read_tx(engine) as conn:
        entries = list_entries(conn, None if args.all else "open")
    engine.dispose()
    if args.json:
        print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return 0
    for e in entries:
        print(f"{e['id']:>5} {e['status']:<8} {e['sourceSystem']}/{e['localKey']} -> Patient/{e['patient']}: "
              f"{e['reason']}" + (f" (candidates: {', '.join(e['candidates'])})" if e["candidates"] else ""))
    if not entries:
        print("no unmatched people")
    return 0


def _cmd_resolve(args: argparse.Namespace) -> int:
    from adapters.unmatched import resolve_entry
    from exchange.db.engine import make_engine, write_tx
    from exchange.outcome import FhirError

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    try:
        with write_tx(engine) as conn:
            outcome = resolve_entry(conn, args.entry, args.patient, settings=settings)
    except FhirError as exc:
        print(f"error: {exc.issues[0].diagnostics}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"merged Patient/{outcome['merged']} into Patient/{outcome['survivor']} ({outcome['moved']} references moved)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``adapters`` and ``ingest`` to the ``exchange`` command line."""
    ad = subparsers.add_parser("adapters", help="source-system adapters")
    sub = ad.add_subparsers(dest="adapters_command", required=True)
    ls = sub.add_parser("list", help="list the adapters found")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cmd_list)
    new = sub.add_parser("new", help="scaffold a new adapter package")
    new.add_argument("name", help="adapter name, e.g. care-home-records")
    new.add_argument("--dir", default=".", help="folder to create the package in")
    new.set_defaults(func=_cmd_new)
    um = sub.add_parser("unmatched", help="people waiting for identity review")
    um.add_argument("--all", action="store_true", help="include resolved entries")
    um.add_argument("--json", action="store_true")
    um.add_argument("--database")
    um.set_defaults(func=_cmd_unmatched)
    rs = sub.add_parser("resolve", help="resolve an unmatched entry: it is this Patient (merges)")
    rs.add_argument("entry", type=int)
    rs.add_argument("patient", help="the shared Patient id the person is")
    rs.add_argument("--database")
    rs.set_defaults(func=_cmd_resolve)

    ing = subparsers.add_parser("ingest", help="run a source feed through an adapter")
    ing.add_argument("adapter")
    ing.add_argument("paths", nargs="+", metavar="PATH")
    ing.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    ing.add_argument("--report", help="write the JSON report to this file")
    ing.add_argument("--source-system", help="source system id (default: the adapter's)")
    ing.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    ing.add_argument("--batch", type=int, default=200, help="resources per transaction")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("--show", type=int, default=20, help="problems to print (all are in --report)")
    ing.set_defaults(func=_cmd_ingest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exchange")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
