"""Command-line administration of SMART clients and keys (SMART Backend Services
"Registering a SMART Backend Service"; docs/authorisation.md).

Subcommands added to the ``exchange`` CLI by :func:`register`::

    exchange clients register --client-id ID --jwks FILE --scope "system/*.rs" \\
                              --organization ODS [--organization ODS2] [--may-assert-users]
    exchange clients list
    exchange clients keygen --private-key client.pem --jwks client.jwks.json [--alg RS384]
    exchange clients disable ID          (and: exchange clients enable ID)
    exchange keys rotate                 new signing key; old one published until expiry
    exchange keys jwks                   print the public JWKS
    exchange token --client-id ID --scope "user/*.rs" [--practitioner ...]   (dev mode only)

Every handler takes the argparse namespace and returns a process exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import orjson

from exchange.auth.clients import list_clients, register_client, set_disabled
from exchange.auth.keys import key_path, load_keys, rotate_keys
from exchange.auth.token import mint_access_token, token_lifetime
from exchange.db.engine import make_engine, read_tx, write_tx
from exchange.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(database_url=getattr(args, "database", None))


def _engine(args: argparse.Namespace):
    return make_engine(_settings(args).database_url)


def cmd_clients_register(args: argparse.Namespace) -> int:
    try:
        jwks = orjson.loads(Path(args.jwks).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"cannot read JWKS file {args.jwks}: {exc}", file=sys.stderr)
        return 2
    engine = _engine(args)
    try:
        with write_tx(engine) as conn:
            client = register_client(
                conn,
                client_id=args.client_id,
                jwks=jwks,
                scopes=args.scope,
                organizations=args.organization or [],
                may_assert_users=args.may_assert_users,
                name=args.name,
            )
    except ValueError as exc:
        print(f"not registered: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    kids = ", ".join(k["kid"] for k in client.jwks["keys"])
    print(f"registered {client.client_id}: scopes [{' '.join(client.scopes)}] "
          f"organisations [{' '.join(client.organizations)}] keys [{kids}]"
          + (" may assert users" if client.may_assert_users else ""))
    return 0


def cmd_clients_keygen(args: argparse.Namespace) -> int:
    """Make a client key pair: a private PEM (0600) and the public JWKS to register."""
    from cryptography.hazmat.primitives import serialization

    from exchange.auth.testing import make_client_keypair

    key = make_client_keypair(args.alg)
    pem = key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path, jwks_path = Path(args.private_key), Path(args.jwks)
    for path in (private_path, jwks_path):
        if path.exists():
            print(f"refusing to overwrite {path}", file=sys.stderr)
            return 2
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    jwks_path.write_bytes(orjson.dumps(key.public_jwks(), option=orjson.OPT_INDENT_2))
    print(f"kid {key.kid} ({args.alg}): private key {private_path}, public JWKS {jwks_path}")
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        with read_tx(engine) as conn:
            clients = list_clients(conn)
    finally:
        engine.dispose()
    if not clients:
        print("no clients registered")
    for c in clients:
        state = "DISABLED" if c.disabled else "active"
        users = "asserts-users" if c.may_assert_users else "system-only"
        print(f"{c.client_id}\t{state}\t{users}\torgs={','.join(c.organizations) or '-'}"
              f"\tscopes={' '.join(c.scopes)}")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    engine = _engine(args)
    try:
        with write_tx(engine) as conn:
            found = set_disabled(conn, args.client_id, disabled)
    finally:
        engine.dispose()
    if not found:
        print(f"no such client: {args.client_id}", file=sys.stderr)
        return 1
    print(f"{'disabled' if disabled else 'enabled'} {args.client_id}")
    return 0


def cmd_clients_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_clients_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    keyset = rotate_keys(settings)
    print(f"new signing key {keyset.current.kid} in {key_path(settings)}; "
          f"{len(keyset.all) - 1} older key(s) published until their tokens expire")
    return 0


def cmd_keys_jwks(args: argparse.Namespace) -> int:
    settings = _settings(args)
    jwks = load_keys(settings).public_jwks(lifetime=token_lifetime(settings))
    print(orjson.dumps(jwks, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.dev_mode:
        print("refused: `exchange token` works only in development mode "
              "(EXCHANGE_DEV_MODE=1)", file=sys.stderr)
        return 2
    if args.purpose == "BTG" and not args.reason:
        print("refused: --purpose BTG needs --reason", file=sys.stderr)
        return 2
    kind = "patient" if args.patient and not args.practitioner else (
        "user" if args.practitioner else "system")
    token, claims = mint_access_token(
        settings,
        client_id=args.client_id,
        scopes=args.scope.split(),
        kind=kind,
        practitioner_id=args.practitioner,
        name=args.name,
        role=args.role,
        organization=args.organization,
        purpose_of_use=args.purpose if kind != "system" else None,
        break_glass_reason=args.reason,
        patient_id=args.patient,
        dev=True,
    )
    if args.curl:
        url = settings.base_url.rstrip("/") + "/" + args.curl.lstrip("/")
        print(f"curl -H {shlex.quote('Authorization: Bearer ' + token)} "
              f"-H 'Accept: application/fhir+json' {shlex.quote(url)}")
    else:
        print(token)
    print(f"# {kind} token for {args.client_id}, expires in {claims['exp'] - claims['iat']} s",
          file=sys.stderr)
    return 0


def _db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--database", help="database URL (default EXCHANGE_DATABASE_URL)")
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``clients``, ``keys`` and ``token`` to the ``exchange`` command line."""
    clients = subparsers.add_parser("clients", help="register and manage SMART clients")
    csub = clients.add_subparsers(dest="clients_command", required=True)
    reg = _db(csub.add_parser("register", help="register (or update) a client and its keys"))
    reg.add_argument("--client-id", required=True)
    reg.add_argument("--jwks", required=True, help="file with the client's public JWKS")
    reg.add_argument("--scope", required=True, help='e.g. "system/*.rs user/*.rs"')
    reg.add_argument("--organization", action="append", help="ODS code (repeatable)")
    reg.add_argument("--may-assert-users", action="store_true",
                     help="allow the jwt-bearer user grant for its organisations")
    reg.add_argument("--name", help="a human-readable name")
    reg.set_defaults(func=cmd_clients_register)
    _db(csub.add_parser("list", help="list registered clients")).set_defaults(func=cmd_clients_list)
    gen = csub.add_parser("keygen", help="make a client key pair (private PEM + public JWKS)")
    gen.add_argument("--alg", choices=["ES384", "RS384"], default="ES384")
    gen.add_argument("--private-key", required=True, help="where to write the private key (PEM)")
    gen.add_argument("--jwks", required=True, help="where to write the public JWKS")
    gen.set_defaults(func=cmd_clients_keygen)
    for name, func in (("disable", cmd_clients_disable), ("enable", cmd_clients_enable)):
        p = _db(csub.add_parser(name, help=f"{name} a client (its tokens stop working at once)"
                                if name == "disable" else "re-enable a client"))
        p.add_argument("client_id")
        p.set_defaults(func=func)

    keys = subparsers.add_parser("keys", help="the exchange's token-signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    _db(ksub.add_parser("rotate", help="start signing with a new key")).set_defaults(
        func=cmd_keys_rotate
    )
    _db(ksub.add_parser("jwks", help="print the public JWKS")).set_defaults(func=cmd_keys_jwks)

    tok = _db(subparsers.add_parser("token", help="mint a local access token (dev mode only)"))
    tok.add_argument("--client-id", default="dev-cli")
    tok.add_argument("--scope", default="user/*.cruds")
    tok.add_argument("--practitioner", help="SDS user id (makes a user token)")
    tok.add_argument("--name", default=None)
    tok.add_argument("--organization", default=None, help="ODS code")
    tok.add_argument("--role", default=None, help="RBAC job role code, e.g. R8000")
    tok.add_argument("--purpose", default="TREAT", choices=["TREAT", "ETREAT", "BTG"])
    tok.add_argument("--reason", default=None, help="break-glass reason (with --purpose BTG)")
    tok.add_argument("--patient", default=None, help="bind a patient/ token to this Patient id")
    tok.add_argument("--curl", default=None, metavar="PATH",
                     help="print a curl command for PATH (e.g. Patient?_count=5)")
    tok.set_defaults(func=cmd_token)
