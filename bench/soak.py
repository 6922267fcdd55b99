"""Soak test: a mixed workload at a steady rate for minutes (issue 11, "Load").

``python -m bench.soak --minutes 10 --rate 50 [--database sqlite|postgres]``

Starts a real server child process (``python -m exchange serve``; consent and audit on,
authorisation off unless ``--auth``) over a fresh database, seeds patients with observations, then
issues requests open-loop at ``--rate`` per second (reads, searches, history, updates,
creates, transaction Bundles) for ``--minutes``. Per window (``--window`` seconds) it
records requests, errors, latency percentiles and the server's resident memory. At the
end it verifies the audit chain and writes ``bench/results/soak-<stamp>.json`` and
``.md`` (a readable table). Exit status 0 only when there were no errors and memory was
flat (last window within ``--max-growth`` of the first after warm-up).
Not part of ``make test``: run by hand. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
#: the mix: (name, weight)
MIX = (("read", 35), ("search-obs", 20), ("search-name", 10), ("history", 10), ("update", 12),
       ("create", 8), ("transaction", 5))


@dataclass
class Window:
    start_s: float
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rss_kib: int = 0
    max_lag_ms: float = 0.0

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms) or [0.0]

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1)

        return {"t_s": round(self.start_s), "requests": self.requests, "errors": self.errors,
                "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(lat[-1], 1),
                "rss_mib": round(self.rss_kib / 1024, 1), "max_lag_ms": round(self.max_lag_ms, 1)}


class Workload:
    """Builds and checks one request of each kind against the seeded population."""

    def __init__(self, base: str, patients: list[str], seed: int = 11, auth: Any = None) -> None:
        self.base, self.patients = base, patients
        self.auth = auth  # () -> headers, or None (authorisation off); renewed before expiry
        self._auth_headers: dict[str, str] = {}
        self._auth_at = 0.0
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.kinds = [k for k, w in MIX for _ in range(w)]

    def pick(self) -> tuple[str, str]:
        with self.lock:
            return self.rng.choice(self.kinds), self.rng.choice(self.patients)

    def headers(self) -> dict[str, str]:
        if self.auth is None:
            return FHIR_JSON
        with self.lock:
            if time.monotonic() - self._auth_at > 120:  # tokens live 300 s
                self._auth_headers, self._auth_at = self.auth(), time.monotonic()
            return {**FHIR_JSON, **self._auth_headers}

    def run(self, http: httpx.Client, kind: str, pid: str) -> tuple[bool, str]:
        b = self.base
        FHIR_JSON = self.headers()  # noqa: N806 - the request headers, with a token when auth is on
        if kind == "read":
            r = http.get(f"{b}/Patient/{pid}", headers=FHIR_JSON)
            return r.status_code == 200, f"{kind} {r.status_code}"
        if kind == "search-obs":
            r = http.get(f"{b}/Observation", params={"patient": f"Patient/{pid}", "_count": "20"}, headers=FHIR_JSON)
            ok = r.status_code == 200 and r.json().get("resourceType") == "Bundle"
            return ok, f"{kind} {r.status_code}"
        if kind == "search-name":
            r = http.get(f"{b}/Patient", params={"family": f"Soak{pid[-3:]}"}, headers=FHIR_JSON)
            return r.status_code == 200, f"{kind} {r.status_code}"
        if kind == "history":
            r = http.get(f"{b}/Observation/{pid}-o0/_history", headers=FHIR_JSON)
            return r.status_code == 200, f"{kind} {r.status_code}"
        if kind == "update":
            obs = observation(f"{pid}-o0", pid, self.rng.randint(40, 140))
            r = http.put(f"{b}/Observation/{pid}-o0", json=obs, headers=FHIR_JSON)
            return r.status_code in (200, 201), f"{kind} {r.status_code}"
        if kind == "create":
            obs = observation(None, pid, self.rng.randint(40, 140))
            r = http.post(f"{b}/Observation", json=obs, headers=FHIR_JSON)
            return r.status_code == 201, f"{kind} {r.status_code}"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
             "resource": observation(None, pid, v)} for v in (60, 70)]}
        r = http.post(b, json=bundle, headers=FHIR_JSON)
        return r.status_code == 200, f"{kind} {r.status_code}"


def observation(oid: str | None, pid: str, value: int) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    if oid:
        obs["id"] = oid
    return obs


def seed(base: str, patients: int, headers: dict[str, str] = FHIR_JSON) -> list[str]:
    ids = [f"soak{i:05d}" for i in range(patients)]
    with httpx.Client(timeout=300) as http:
        for start in range(0, patients, 50):
            entries = []
            for pid in ids[start:start + 50]:
                entries.append({"request": {"method": "PUT", "url": f"Patient/{pid}"}, "resource": {
                    "resourceType": "Patient", "id": pid, "name": [{"family": f"Soak{pid[-3:]}", "given": ["Pat"]}],
                    "birthDate": "1950-01-01"}})
                for k in range(3):
                    entries.append({"request": {"method": "PUT", "url": f"Observation/{pid}-o{k}"},
                                    "resource": observation(f"{pid}-o{k}", pid, 60 + k)})
            r = http.post(base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                          headers=headers)
            r.raise_for_status()
    return ids


class Server:
    """The server under test as a child process; its RSS read from /proc."""

    def __init__(self, database_url: str, var_dir: Path, *, auth: bool = False) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.update({"EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_VAR_DIR": str(var_dir),
                    "EXCHANGE_AUTH_ENABLED": "1" if auth else "0", "EXCHANGE_DEV_MODE": "1" if auth else "0",
                    "EXCHANGE_CONSENT_ENABLED": "1", "EXCHANGE_AUDIT_ENABLED": "1",
                    "EXCHANGE_SECRET_KEY": "soak-secret", "EXCHANGE_BASE_URL": self.base, "PYTHONPATH": str(ROOT)})
        self.env = env
        self.log = open(var_dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "exchange", "serve", "--port", str(self.port),
                                      "--log-level", "warning"], cwd=str(ROOT), env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def bearer(self) -> dict[str, str]:
        """A fresh system token for this server (development signing, as ``exchange token``)."""
        from exchange.auth.token import mint_access_token
        from exchange.settings import Settings

        token, _ = mint_access_token(Settings.from_env(env=self.env), dev=True, client_id="soak-driver",
                                     scopes=["system/*.cruds"], kind="system")
        return {"authorization": f"Bearer {token}"}

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def prepare(database: str, postgres_url: str, tmp: Path) -> tuple[str, str | None]:
    """Create and migrate a fresh database; returns (url, PostgreSQL database to drop)."""
    import adapters.tables  # noqa: F401 - registers every table on the shared metadata
    import consent.tables  # noqa: F401
    from exchange.db.engine import make_engine, normalise_url
    from exchange.db.metadata import metadata
    from exchange.db.migrate import upgrade

    dropme = None
    if database == "sqlite":
        url = f"sqlite:///{tmp / 'soak.db'}"
    else:
        from sqlalchemy import create_engine, text

        dropme = f"exchange_soak_{uuid.uuid4().hex[:8]}"
        admin = create_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dropme}"'))
        admin.dispose()
        url = postgres_url.rsplit("/", 1)[0] + "/" + dropme
    upgrade(url)
    eng = make_engine(url)
    metadata.create_all(eng, checkfirst=True)
    eng.dispose()
    return url, dropme


def drive(server: Server, work: Workload, seconds: float, rate: float, window_s: float,
          workers: int) -> tuple[list[Window], list[str]]:
    """Open loop: request k is due at start + k/rate, whatever the previous ones did."""
    windows: list[Window] = []
    errors: list[str] = []
    lock = threading.Lock()
    due: queue.Queue[float | None] = queue.Queue()
    start = time.perf_counter()

    def window_at(t: float) -> Window:
        idx = int(t // window_s)
        while len(windows) <= idx:
            windows.append(Window(start_s=len(windows) * window_s))
        return windows[idx]

    def worker() -> None:
        with httpx.Client(timeout=30) as http:
            while (when := due.get()) is not None:
                kind, pid = work.pick()
                t0 = time.perf_counter()
                try:
                    ok, what = work.run(http, kind, pid)
                except httpx.HTTPError as exc:
                    ok, what = False, f"{kind} {type(exc).__name__}"
                t1 = time.perf_counter()
                with lock:
                    w = window_at(when - start)
                    w.requests += 1
                    w.latencies_ms.append((t1 - t0) * 1000)
                    w.max_lag_ms = max(w.max_lag_ms, (t0 - when) * 1000)
                    if not ok:
                        w.errors += 1
                        errors.append(what)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    total = int(seconds * rate)
    next_sample = 0.0
    for k in range(total):
        when = start + k / rate
        now = time.perf_counter()
        if when > now:
            time.sleep(when - now)
        due.put(when)
        if when - start >= next_sample:
            with lock:
                window_at(when - start).rss_kib = server.rss_kib()
            next_sample += 1.0
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    with lock:
        windows[-1].rss_kib = server.rss_kib()
    return windows, errors


def memory_verdict(rows: list[dict[str, Any]], max_growth: float) -> dict[str, Any]:
    """Flat when the last window's RSS is within ``max_growth`` of the first after warm-up
    (the first window is warm-up: imports, caches, pools)."""
    steady = rows[1:] if len(rows) > 2 else rows
    first, last = steady[0]["rss_mib"], steady[-1]["rss_mib"]
    xs = [r["t_s"] / 60 for r in steady]
    ys = [r["rss_mib"] for r in steady]
    slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else 0.0
    growth = (last - first) / first if first else 0.0
    return {"first_steady_mib": first, "last_mib": last, "growth": round(growth, 4),
            "slope_mib_per_min": round(slope, 2), "flat": growth <= max_growth}


def table(result: dict[str, Any]) -> str:
    o = result["options"]
    lines = [f"# Soak run {result['stamp']}", "",
             f"{o['minutes']} min at {o['rate']} req/s on {o['database']} (window {o['window']} s), "
             f"{result['requests']} requests, **{result['errors']} errors**, "
             f"memory {'flat' if result['memory']['flat'] else 'GROWING'} "
             f"({result['memory']['first_steady_mib']} -> {result['memory']['last_mib']} MiB, "
             f"{result['memory']['slope_mib_per_min']} MiB/min); audit chain: {result['audit']}", "",
             "| t (s) | requests | errors | p50 ms | p90 ms | p99 ms | max ms | server RSS MiB | max lag ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["windows"]:
        lines.append(f"| {r['t_s']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p90_ms']} | "
                     f"{r['p99_ms']} | {r['max_ms']} | {r['rss_mib']} | {r['max_lag_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--postgres-url", default=os.environ.get(
        "EXCHANGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--window", type=float, default=30.0, help="seconds per reporting window")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--auth", action="store_true", help="authorisation on (a system token, renewed every 2 min)")
    args = p.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmpdir:
        tmp = Path(tmpdir)
        url, dropme = prepare(args.database, args.postgres_url, tmp)
        server = Server(url, tmp, auth=args.auth)
        try:
            ids = seed(server.base, args.patients, {**FHIR_JSON, **server.bearer()} if args.auth else FHIR_JSON)
            print(f"seeded {len(ids)} patients; soaking {args.minutes} min at {args.rate} req/s", flush=True)
            work = Workload(server.base, ids, auth=server.bearer if args.auth else None)
            windows, errors = drive(server, work, args.minutes * 60, args.rate, args.window, args.workers)
        finally:
            server.stop()
        from exchange.audit.verify import verify
        from exchange.db.engine import make_engine
        from exchange.settings import Settings

        eng = make_engine(url)
        audit = verify(eng, Settings.from_env(env=server.env)).summary()
        eng.dispose()
        if dropme:
            from sqlalchemy import create_engine, text

            from exchange.db.engine import normalise_url

            admin = create_engine(normalise_url(args.postgres_url), isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{dropme}" WITH (FORCE)'))
            admin.dispose()
    rows = [w.row() for w in windows]
    result = {"stamp": stamp, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "requests": sum(r["requests"] for r in rows), "errors": len(errors),
              "error_samples": sorted(set(errors))[:20], "windows": rows,
              "memory": memory_verdict(rows, args.max_growth), "audit": audit,
              "mix": dict(MIX)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"soak-{stamp}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text_table = table(result)
    (args.out / f"soak-{stamp}.md").write_text(text_table)
    print(text_table)
    ok = result["errors"] == 0 and result["memory"]["flat"] and audit.startswith("OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
