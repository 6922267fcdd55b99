"""``make demo``: migrate the embedded database, load the sample feeds through the
adapters, print how to call the server, then serve on http://127.0.0.1:8080/fhir.

Development mode is switched on for the demo only (it lets ``exchange token`` mint
local tokens); never in production.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from exchange.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "adapters"
FEEDS = (  # adapter, source system (ODS code), sample files (inside the repository)
    ("gp-connect", "N82001", [SAMPLES / "gp_connect/samples/structured-record-whitfield.json",
                              SAMPLES / "gp_connect/samples/structured-record-nolan.json"]),
    ("gp-connect", "N82002", [SAMPLES / "gp_connect/samples/structured-record-ohare.json"]),
    ("hl7v2", "REM", [SAMPLES / "hl7v2/samples/rem-uk-feed.hl7"]),
    ("community", None, [SAMPLES / "community/samples"]),
    ("social-care", None, [SAMPLES / "social_care/samples"]),
)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SHARED_PERSON = "9990000425"  # Joan Whitfield: GP, hospital, community and social care


def _ingest_all(settings: Settings) -> None:
    from adapters.pipeline import ingest
    from adapters.registry import load
    from exchange.db.engine import make_engine

    engine = make_engine(settings.database_url)
    for name, source_system, paths in FEEDS:
        report = ingest(engine, settings, load(name), paths, source_system=source_system)
        counts = report.to_dict().get("counts", {})
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"  {name:12s} {source_system or '':7s} {shown}")
    engine.dispose()


def _patient_id(settings: Settings) -> str | None:
    from exchange.db.engine import make_engine, read_tx
    from exchange.pipeline.context import RequestContext, Requester
    from exchange.search.service import find_rids

    engine = make_engine(settings.database_url)
    ctx = RequestContext(requester=Requester(kind="system", scopes=frozenset({"system/*.rs"})))
    with read_tx(engine) as conn:
        rids = find_rids(conn, ctx, "Patient", [("identifier", f"{NHS}|{SHARED_PERSON}")])
        if not rids:
            return None
        from exchange.repository.store import read_many_current

        found = read_many_current(conn, rids[:1])
    engine.dispose()
    return found[0].id if found else None


def _token(settings: Settings, **kw) -> str:
    from exchange.auth.token import mint_access_token

    token, _ = mint_access_token(settings, dev=True, **kw)
    return token


def _ig_user(settings: Settings) -> str:
    """A local IG account for the demo console (development only)."""
    from exchange.console.accounts import add_user
    from exchange.db.engine import make_engine, write_tx

    engine = make_engine(settings.database_url)
    with write_tx(engine) as conn:
        add_user(conn, "ig-lead", "demo-ig-password")
    engine.dispose()
    return "ig-lead / demo-ig-password"


def main() -> int:
    os.chdir(ROOT)
    os.environ.setdefault("EXCHANGE_DEV_MODE", "1")
    os.environ.setdefault("EXCHANGE_DATABASE_URL", "sqlite:///var/exchange.db")
    os.environ.setdefault("EXCHANGE_BASE_URL", "http://127.0.0.1:8080/fhir")
    settings = Settings.from_env()
    from exchange.db.migrate import upgrade

    print(f"1. migrating {settings.database_url}")
    upgrade(settings.database_url)
    print("2. loading the sample feeds through the adapters")
    _ingest_all(settings)
    pid = _patient_id(settings) or "<patient-id>"
    base = settings.base_url
    gp = _token(settings, client_id="demo-gp-system", scopes=["user/*.rs"], kind="user",
                practitioner_id="555000000001", name="Dr Priya Shah", role="R8000",
                organization="N82001", purpose_of_use="TREAT")
    system = _token(settings, client_id="demo-ig-tool", scopes=["system/*.rs"], kind="system")
    ig = _ig_user(settings)
    print(f"""
3. the exchange is starting on {base}

   Tokens below are development tokens (5 minutes). Mint fresh ones with:
     .venv/bin/exchange token --client-id demo-gp-system --scope 'user/*.rs' \\
        --practitioner 555000000001 --organization N82001 --role R8000 --purpose TREAT

   GP token (Breck Road Surgery, N82001):   export GP='{gp}'
   System token (IG tooling):               export SYS='{system}'

   curl -s {base}/metadata | head -c 300
   curl -s -H "Authorization: Bearer $GP" '{base}/Patient?identifier={NHS}|{SHARED_PERSON}'
   curl -s -H "Authorization: Bearer $GP" {base}/Patient/{pid}/\\$everything
   curl -s -H "Authorization: Bearer $GP" {base}/Patient/{pid}/\\$care-preferences
   curl -s -H "Authorization: Bearer $GP" -H 'Content-Type: application/json' \\
        -d '{{"hook":"patient-view","hookInstance":"demo","context":{{"patientId":"{pid}","userId":"Practitioner/555000000001"}}}}' \\
        http://127.0.0.1:8080/cds-services/care-preferences-patient-view
   curl -s -H "Authorization: Bearer $SYS" '{base}/AuditEvent?patient={pid}'
   IG console: http://127.0.0.1:8080/ig/ {f'(sign in as {ig})' if ig else ''}
""", flush=True)
    exe = ROOT / ".venv" / "bin" / "exchange"
    args = [str(exe), "serve", "--host", "127.0.0.1", "--port", "8080"]
    os.execv(str(exe), args) if exe.exists() else os.execv(sys.executable, [sys.executable, "-m", "exchange", *args[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
