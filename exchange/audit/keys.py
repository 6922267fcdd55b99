"""The audit checkpoint signing key (Ed25519, RFC 8032) and the checkpoint witness file.

The key lives outside the database at
``settings.path_in_var(settings.audit_key_path, "audit-ed25519.pem")`` and is created
(mode 0600) on first use. Someone who can rewrite the database cannot forge a checkpoint
without it. Next to the key, ``<key>.witness.json`` remembers the highest checkpoint
ever signed, so even deleting checkpoint rows together with the events they cover is
detected by ``verify``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.settings import Settings


def key_path(settings: Settings) -> Path:
    return settings.path_in_var(settings.audit_key_path, "audit-ed25519.pem")


def load_or_create_key(settings: Settings) -> Ed25519PrivateKey:
    path = key_path(settings)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    try:
        os.link(tmp, path)  # another process may have won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return load_or_create_key(settings)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(kind: str, count: int, head_hash: str, created_iso: str) -> bytes:
    return f"audit-checkpoint|{kind}|{count}|{head_hash}|{created_iso}".encode()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def signature_ok(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Witness:
    event_count: int
    head_hash: str


def witness_path(settings: Settings) -> Path:
    p = key_path(settings)
    return p.with_name(p.name + ".witness.json")


def read_witness(settings: Settings) -> Witness | None:
    path = witness_path(settings)
    try:
        data = json.loads(path.read_text())
        return Witness(int(data["event_count"]), str(data["head_hash"]))
    except (FileNotFoundError, ValueError, KeyError):
        return None


def advance_witness(settings: Settings, count: int, head_hash: str) -> None:
    """Record a signed checkpoint in the witness file if it is the highest so far."""
    path = witness_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several worker processes share the file
        current = read_witness(settings)
        if current is not None and current.event_count >= count:
            return
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"event_count": count, "head_hash": head_hash}))
        os.replace(tmp, path)


def reset_witness(settings: Settings) -> None:
    witness_path(settings).unlink(missing_ok=True)
