"""One typed settings object, read from ``EXCHANGE_*`` environment variables.

CLI flags override the environment (``Settings.from_env(**overrides)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def _bool(v: str) -> bool:
    return v.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/exchange.db"
    base_url: str = "http://127.0.0.1:8080/fhir"
    var_dir: Path = Path("var")
    #: authorisation on (SMART); off only for development and the benchmark baseline
    auth_enabled: bool = True
    #: development mode: allows ``exchange token`` to mint tokens locally
    dev_mode: bool = False
    #: access-token lifetime in seconds (SMART: at most 300)
    token_lifetime: int = 300
    #: the exchange's signing keys (JWKS of private keys); generated on first run
    signing_key_path: Path | None = None
    #: YAML/JSON file listing trusted external identity providers
    trusted_issuers_file: Path | None = None
    #: Ed25519 key for audit checkpoints, kept apart from the database
    audit_key_path: Path | None = None
    #: consent policy file (YAML/JSON); None = the packaged default policy
    consent_policy_path: Path | None = None
    #: care-relationship look-back window in days
    relationship_lookback_days: int = 365
    max_bundle_entries: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    default_page_size: int = 50
    max_page_size: int = 1000
    max_include: int = 1000
    #: secret for signing paging cursors and console cookies; generated under var/ if unset
    secret_key: str | None = None
    audit_enabled: bool = True
    consent_enabled: bool = True
    # -- database time limits (docs/architecture.md, "Time limits"). Request limits
    # apply to every read_tx / write_tx; the longer "job" limits to migrations, bulk
    # ingest and retention (everything that opens its own transaction or asks for them).
    #: PostgreSQL statement_timeout for a request transaction's statements (ms)
    db_statement_timeout_ms: int = 15_000
    #: PostgreSQL lock_timeout for a request transaction (ms); below the statement limit
    db_lock_timeout_ms: int = 5_000
    #: PostgreSQL idle_in_transaction_session_timeout for a request transaction (ms)
    db_idle_in_transaction_timeout_ms: int = 60_000
    #: the same three for jobs (migrations, bulk ingest, retention); 0 means no limit
    db_job_statement_timeout_ms: int = 1_800_000
    db_job_lock_timeout_ms: int = 10_000
    db_job_idle_in_transaction_timeout_ms: int = 600_000
    #: libpq connect_timeout (s) and TCP keepalives / user timeout, so that a peer that
    #: vanished (dropped packets, partition) is noticed instead of waited for
    db_connect_timeout_s: int = 5
    db_keepalives_idle_s: int = 10
    db_keepalives_interval_s: int = 5
    db_keepalives_count: int = 3
    db_tcp_user_timeout_ms: int = 25_000
    #: last resort when the server does not answer at all, not even to a cancel (a stuck
    #: disk, a frozen host): a request transaction that has waited this many seconds for
    #: one statement's result has its connection cut by the client (s); a pooled
    #: connection's liveness check is cut after db_connect_timeout_s
    db_request_deadline_s: int = 45
    #: SQLite busy_timeout (ms): how long a request waits for the database write lock
    sqlite_busy_timeout_ms: int = 10_000
    #: SQLite busy_timeout for jobs (ms)
    sqlite_job_busy_timeout_ms: int = 60_000
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict = {}
        for f in fields(cls):
            key = "EXCHANGE_" + f.name.upper()
            if key not in env or f.name == "extra":
                continue
            raw = env[key]
            if f.type in ("bool",):
                values[f.name] = _bool(raw)
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif "Path" in str(f.type):
                values[f.name] = Path(raw) if raw else None
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    def path_in_var(self, configured: Path | None, default_name: str) -> Path:
        return configured if configured is not None else self.var_dir / default_name
