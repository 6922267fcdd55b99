"""Command line for the access log (issue 7): ``exchange audit ...`` and ``exchange ig-users``.

* ``audit verify [--from DATE] [--json]``: check the chain and signed checkpoints; exit 1
  and name the first failing event if the log was altered.
* ``audit report NAME --from DATE --to DATE [--format csv|json] [--patient ID]
  [--threshold N] [--output FILE]``: run one IG report (see :mod:`exchange.audit.reports`).
* ``audit checkpoint``: sign the current head now.
* ``audit retention --before DATE``: archive then remove older events (documented job);
  ``audit verify-archive FILE`` checks an archive file against its retention checkpoint.
* ``ig-users add USERNAME [--password P]``: create or reset a local IG console account
  (password from stdin when not given); ``ig-users disable USERNAME [--enable]``.

``register(subparsers)`` adds these; each sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from exchange.audit import keys
from exchange.audit.chain import checkpoint_now
from exchange.audit.fhir import date_range
from exchange.audit.reports import REPORTS, run_report, to_csv
from exchange.audit.retention import run_retention, verify_archive
from exchange.audit.verify import verify
from exchange.console.accounts import add_user, set_disabled
from exchange.db.engine import make_engine, read_tx, write_tx
from exchange.outcome import FhirError
from exchange.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(database_url=getattr(args, "database", None))


def _date(text: str, *, end: bool = False) -> datetime:
    try:
        lo, hi = date_range(text)
    except FhirError as exc:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from exc
    return hi if end else lo


def _start(text: str) -> datetime:
    return _date(text)


def _end(text: str) -> datetime:
    return _date(text, end=True)


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    result = verify(make_engine(settings.database_url), settings, args.from_date)
    if args.json:
        print(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(result.summary())
    return 0 if result.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    start = args.from_date or datetime.now(UTC) - timedelta(days=30)
    end = args.to_date or datetime.now(UTC) + timedelta(seconds=1)
    try:
        with read_tx(make_engine(settings.database_url)) as conn:
            rows = run_report(conn, args.name, start, end, patient=args.patient,
                              threshold=args.threshold)
    except FhirError as exc:
        print(f"error: {exc.diagnostics}", file=sys.stderr)
        return 2
    if args.format == "json":
        text = orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = to_csv(rows, REPORTS[args.name].columns)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        print(f"{len(rows)} rows written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with write_tx(make_engine(settings.database_url)) as conn:
        cp = checkpoint_now(conn, settings)
    keys.advance_witness(settings, cp["event_count"], cp["head_hash"])
    print(f"Signed checkpoint at {cp['event_count']} events (head {cp['head_hash'][:16]}...)")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    settings = _settings(args)
    result = run_retention(make_engine(settings.database_url), settings, args.before)
    print(result.summary())
    return 0


def cmd_verify_archive(args: argparse.Namespace) -> int:
    settings = _settings(args)
    result = verify_archive(Path(args.file), make_engine(settings.database_url))
    print(result.summary())
    return 0 if result.ok else 1


def cmd_ig_user_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    password = args.password
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
        password = password.rstrip("\r\n")
    try:
        with write_tx(make_engine(settings.database_url)) as conn:
            created = add_user(conn, args.username, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"IG user '{args.username}' {'created' if created else 'password reset'}")
    return 0


def cmd_ig_user_disable(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with write_tx(make_engine(settings.database_url)) as conn:
        found = set_disabled(conn, args.username, not args.enable)
    if not found:
        print(f"error: no IG user '{args.username}'", file=sys.stderr)
        return 2
    print(f"IG user '{args.username}' {'enabled' if args.enable else 'disabled'}")
    return 0


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser("audit", help="verify, report on and maintain the access log")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    p = sub.add_parser("verify", help="check the hash chain and signed checkpoints")
    _db(p)
    p.add_argument("--from", dest="from_date", type=_start,
                   help="only events recorded on or after DATE")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report", help="run an IG report")
    _db(p)
    p.add_argument("name", choices=sorted(REPORTS))
    p.add_argument("--from", dest="from_date", type=_start,
                   help="start date (default: 30 days ago)")
    p.add_argument("--to", dest="to_date", type=_end, help="end date, inclusive (default: now)")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--patient", help="patient id, NHS number or system|value (patient-history)")
    p.add_argument("--threshold", help="distinct patients (high-volume, default 50)")
    p.add_argument("--output", help="write to FILE instead of standard output")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("checkpoint", help="sign the current chain head now")
    _db(p)
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("retention", help="archive then remove events recorded before DATE")
    _db(p)
    p.add_argument("--before", required=True, type=_start, help="DATE (YYYY-MM-DD)")
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("verify-archive", help="check an archive file written by retention")
    _db(p)
    p.add_argument("file")
    p.set_defaults(func=cmd_verify_archive)

    users = subparsers.add_parser("ig-users", help="manage local IG console accounts")
    usub = users.add_subparsers(dest="ig_users_command", required=True)
    p = usub.add_parser("add", help="create or reset a local IG account")
    _db(p)
    p.add_argument("username")
    p.add_argument("--password", help="the password (default: read from standard input)")
    p.set_defaults(func=cmd_ig_user_add)
    p = usub.add_parser("disable", help="disable a local IG account (ends its sessions)")
    _db(p)
    p.add_argument("username")
    p.add_argument("--enable", action="store_true", help="re-enable the account instead")
    p.set_defaults(func=cmd_ig_user_disable)


def main(argv: list[str] | None = None) -> int:
    """Run these commands on their own (the lead's ``exchange`` CLI calls :func:`register`)."""
    parser = argparse.ArgumentParser(prog="exchange")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
