"""Orchestrates one benchmark run: database, population, servers, scenarios, results."""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import population as pop
from bench.driver import LoadResult, run_wrk
from exchange.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NHS = pop.NHS


@dataclass
class Options:
    database: str = "sqlite"  # sqlite | postgres
    patients: int = 1000
    seconds: float = 4.0
    runs: int = 3
    connections: int = 8
    scenarios: tuple[str, ...] = ()
    postgres_url: str = os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    out_dir: Path = ROOT / "bench" / "results"
    ingest_patients: int = 300


@dataclass
class ScenarioResult:
    name: str
    server: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    ratio_to_baseline: float | None = None
    note: str = ""


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def database_url(opts: Options) -> str:
    if opts.database == "sqlite":
        path = ROOT / "var" / "bench" / f"bench-{opts.patients}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    from sqlalchemy import create_engine, text

    from exchange.db.engine import normalise_url

    name = f"exchange_bench_{opts.patients}"
    admin = create_engine(normalise_url(opts.postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if not c.execute(text("select 1 from pg_database where datname = :n"), {"n": name}).first():
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return normalise_url(opts.postgres_url).rsplit("/", 1)[0] + "/" + name


def load_population(settings: Settings, n: int, loader: str = "api") -> dict[str, Any]:
    """Load the population; returns load figures.

    ``api`` goes through the REST write path (``process_bundle``: validation, labels,
    search index, consent facts, versions). ``bulk`` goes through the adapters' batch
    writer (``adapters.bulk.put_many``: the same versions, search index and consent facts,
    set-based; the synthetic data is valid by construction) for large populations."""
    from exchange.app import build_services
    from exchange.db.engine import read_tx
    from exchange.interactions.bundle import process_bundle
    from exchange.pipeline.context import RequestContext, Requester
    from exchange.repository.store import read_current

    s = settings.with_(audit_enabled=False, consent_enabled=False, auth_enabled=False)
    svc = build_services(s)
    with read_tx(svc.engine) as conn:
        if read_current(conn, "Patient", pop.patient_id(n - 1)) is not None:
            return {"loaded": 0, "note": "population already loaded"}
    requester = Requester(kind="system", client_id="bench-loader", scopes=frozenset({"system/*.*"}))
    process_bundle(svc, RequestContext(requester=requester), pop.organisations())
    resources = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    chunk = min(500, settings.max_bundle_entries)
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        from adapters.bulk import put_many
        from exchange.db.engine import write_tx

        with write_tx(svc.engine) as conn:
            put_many(conn, pending)
        pending.clear()

    for i, bundle in pop.population(n):
        entries = bundle["entry"]
        if loader == "bulk":
            pending.extend(e["resource"] for e in entries)
            if len(pending) >= 2000:
                flush()
        else:
            for k in range(0, len(entries), chunk):  # complex patients span several transactions
                process_bundle(svc, RequestContext(requester=requester), {**bundle, "entry": entries[k : k + chunk]})
        resources += len(entries)
        if i % 200 == 0:
            print(f"  loaded {i}/{n} patients ({resources} resources)", flush=True)
    if pending:
        flush()
    analyze(svc.engine)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    svc.engine.dispose()
    return {"loaded": resources, "loader": loader, "seconds": round(wall, 1), "resources_per_s": round(resources / wall, 1),
            "resources_per_cpu_s": round(resources / cpu, 1)}


def analyze(engine) -> None:  # noqa: ANN001
    """Refresh the planner's statistics after a bulk load (PostgreSQL's autovacuum would
    do it later; until it does, plans chosen on empty-table estimates scan whole indexes)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()


class Server:
    def __init__(self, settings: Settings, label: str) -> None:
        self.port = _free_port()
        self.label = label
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ,
               "EXCHANGE_DATABASE_URL": settings.database_url,
               "EXCHANGE_BASE_URL": f"{self.base}/fhir",
               "EXCHANGE_VAR_DIR": str(settings.var_dir),
               "EXCHANGE_AUTH_ENABLED": "1" if settings.auth_enabled else "0",
               "EXCHANGE_CONSENT_ENABLED": "1" if settings.consent_enabled else "0",
               "EXCHANGE_AUDIT_ENABLED": "1" if settings.audit_enabled else "0",
               "EXCHANGE_DEV_MODE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.serve", "--port", str(self.port)], env=env, cwd=ROOT)
        for _ in range(600):
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server {label} did not start")

    def peak_rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(name: str, server: Server, paths: list[str], token: str, opts: Options) -> ScenarioResult:
    """Throughput with ``opts.connections`` concurrent connections, and latency with one
    connection (so that the median is the service time, not queueing), each the median of
    ``opts.runs`` runs after a warm-up."""
    run_wrk(server.base, paths, token=token, seconds=1, connections=opts.connections)  # warm-up
    loaded: list[LoadResult] = [
        run_wrk(server.base, paths, token=token, seconds=opts.seconds, connections=opts.connections)
        for _ in range(opts.runs)
    ]
    single: list[LoadResult] = [
        run_wrk(server.base, paths, token=token, seconds=max(1.0, opts.seconds / 2), connections=1)
        for _ in range(opts.runs)
    ]
    med = statistics.median
    return ScenarioResult(
        name=name, server=server.label, rps=round(med([r.rps for r in loaded]), 1),
        p50_ms=round(med([r.p50_ms for r in single]), 2), p90_ms=round(med([r.p90_ms for r in single]), 2),
        p99_ms=round(med([r.p99_ms for r in single]), 2),
        errors=sum(r.errors + r.non2xx for r in loaded + single),
        runs=[{"connections": opts.connections, **asdict(r)} for r in loaded]
        + [{"connections": 1, **asdict(r)} for r in single],
    )


def gp_token(settings: Settings, server: Server) -> str:
    """A development token for a GP at N82001, issued for ``server``'s base URL (iss/aud)."""
    from exchange.auth.token import mint_access_token

    token, _ = mint_access_token(settings.with_(base_url=f"{server.base}/fhir"), dev=True, client_id="bench-gp", scopes=["user/*.rs"], kind="user",
                                 practitioner_id="555000000009", name="Dr Bench", role="R8000",
                                 organization="N82001", purpose_of_use="TREAT")
    return token


def scenario_paths(n: int) -> dict[str, list[str]]:
    """Request paths per scenario, for patients registered at N82001 (the token's practice)."""
    own = [i for i in range(n) if i % len(pop.PRACTICES) == 0 and i >= 1] or [0]
    ordinary = [i for i in own if i % 200 != 1][:200]
    complex_ = [i for i in own if i % 200 == 1][:20] or ordinary[:1]
    f = lambda i: f"/fhir/Patient/{pop.patient_id(i)}"  # noqa: E731
    return {
        "baseline": [f"/baseline/Patient/{pop.patient_id(i)}" for i in ordinary],
        "read": [f(i) for i in ordinary],
        "search-observation": [f"/fhir/Observation?patient=Patient/{pop.patient_id(i)}&code={pop.LOINC}|8867-4&date=ge2024-01-01"
                               for i in ordinary],
        "search-patient-identifier": [f"/fhir/Patient?identifier={NHS}|{pop.nhs_number(i)}" for i in ordinary],
        "search-patient-name": [f"/fhir/Patient?family={pop.FAMILIES[i % len(pop.FAMILIES)]}{'' if i < 20 else i % 997}"
                                for i in ordinary],
        "everything-ordinary": [f(i) + "/$everything" for i in ordinary],
        "everything-complex": [f(i) + "/$everything?_count=1000" for i in complex_],
        "care-preferences": [f(i) + "/$care-preferences" for i in ordinary],
        "mixed": [p for i in ordinary for p in (f(i), f(i) + "/$care-preferences",
                                               f"/fhir/Observation?patient=Patient/{pop.patient_id(i)}&_count=20",
                                               f"/fhir/Condition?patient=Patient/{pop.patient_id(i)}")],
    }


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
