"""The registry of SMART Backend Services clients (SMART App Launch 2, "Backend Services":
"Registering a SMART Backend Service").

A client is registered with its public JWKS (the keys its assertions are signed with),
the scopes it may ever be granted, the organisations (ODS codes) it acts for and
whether it may assert practitioners (the RFC 7523 user grant). Disabling a client
refuses its assertions and every access token already issued to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from exchange.auth.jws import JWSError, public_jwk, public_key_from_jwk
from exchange.auth.tables import auth_client

_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "e", "n", "kid", "alg", "use")


@dataclass(frozen=True)
class Client:
    client_id: str
    jwks: dict[str, Any]
    scopes: tuple[str, ...]
    organizations: tuple[str, ...]
    may_assert_users: bool
    disabled: bool
    name: str | None = None


def clean_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a client's JWKS and keep only public members.

    Every key needs a ``kid`` (assertions select keys by kid only) and must be a usable
    RSA (>= 2048 bits) or EC P-256/P-384 public key; private members are dropped so a
    JWKS exported together with its private key never ends up in the database.
    """
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("JWKS must be an object with a non-empty 'keys' array")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for k in keys:
        if not isinstance(k, Mapping) or not isinstance(k.get("kid"), str) or not k["kid"]:
            raise ValueError("every key in the JWKS needs a 'kid'")
        if k["kid"] in seen:
            raise ValueError(f"duplicate kid {k['kid']!r}")
        seen.add(k["kid"])
        try:
            pub = public_key_from_jwk(k)
            public_jwk(pub)
        except JWSError as exc:
            raise ValueError(f"key {k['kid']!r} is not a usable RSA or EC public key") from exc
        if k.get("kty") == "RSA" and pub.key_size < 2048:
            raise ValueError(f"key {k['kid']!r}: RSA keys must have at least 2048 bits")
        out.append({m: k[m] for m in _PUBLIC_MEMBERS if m in k})
    return {"keys": out}


def _split(values: Iterable[str] | str) -> tuple[str, ...]:
    items = values.split() if isinstance(values, str) else values
    out: list[str] = []
    for item in items:
        for part in item.replace(",", " ").split():
            if part not in out:
                out.append(part)
    return tuple(out)


def register_client(
    conn: Connection,
    *,
    client_id: str,
    jwks: Mapping[str, Any],
    scopes: Iterable[str] | str,
    organizations: Iterable[str] | str = (),
    may_assert_users: bool = False,
    name: str | None = None,
) -> Client:
    """Register (or re-register, replacing keys/scopes and re-enabling) a client."""
    if not client_id or len(client_id) > 255:
        raise ValueError("client_id must be 1-255 characters")
    keys = clean_jwks(jwks)
    scope_list = _split(scopes)
    orgs = _split(organizations)
    if may_assert_users and not orgs:
        raise ValueError("a client that asserts users must be registered for an organisation")
    now = int(time.time())
    values = {
        "name": name,
        "jwks": orjson.dumps(keys).decode(),
        "scopes": " ".join(scope_list),
        "organizations": " ".join(orgs),
        "may_assert_users": may_assert_users,
        "disabled": False,
        "updated_at": now,
    }
    exists = conn.execute(
        select(auth_client.c.client_id).where(auth_client.c.client_id == client_id)
    ).first()
    if exists:
        conn.execute(update(auth_client).where(auth_client.c.client_id == client_id).values(values))
    else:
        conn.execute(auth_client.insert().values(client_id=client_id, created_at=now, **values))
    return Client(client_id, keys, scope_list, orgs, may_assert_users, False, name)


def _row_to_client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        jwks=orjson.loads(row.jwks),
        scopes=tuple(row.scopes.split()),
        organizations=tuple(row.organizations.split()),
        may_assert_users=bool(row.may_assert_users),
        disabled=bool(row.disabled),
        name=row.name,
    )


def get_client(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).first()
    return _row_to_client(row) if row else None


def list_clients(conn: Connection) -> list[Client]:
    rows = conn.execute(select(auth_client).order_by(auth_client.c.client_id)).all()
    return [_row_to_client(r) for r in rows]


def set_disabled(conn: Connection, client_id: str, disabled: bool = True) -> bool:
    """Disable (or re-enable) a client; False when no such client is registered."""
    result = conn.execute(
        update(auth_client)
        .where(auth_client.c.client_id == client_id)
        .values(disabled=disabled, updated_at=int(time.time()))
    )
    return result.rowcount > 0


_IS_ACTIVE = select(auth_client.c.disabled).where(auth_client.c.client_id == bindparam("cid"))


def is_active(conn: Connection, client_id: str) -> bool | None:
    """True active, False disabled, None not registered (one indexed lookup per request)."""
    row = conn.execute(_IS_ACTIVE, {"cid": client_id}).first()
    return None if row is None else not row.disabled
