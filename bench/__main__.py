"""``python -m bench`` / ``make bench``: the benchmark suite.

    python -m bench                          # short default: SQLite, 1,000 patients
    python -m bench --database postgres --patients 10000
    python -m bench --scenario read --scenario search-observation --seconds 10

Scenarios run with authorisation, consent and audit on ("full"); the baseline is the
same server answering stored bytes with none of them; "bare" is the same query path
with authorisation, consent and audit off (their combined cost); "no-consent" and
"no-audit" isolate each.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import run as R
from bench.driver import have_wrk, walk_pages
from bench.report import write
from exchange.settings import Settings

FULL_SCENARIOS = ("read", "search-observation", "search-patient-identifier", "search-patient-name",
                  "everything-ordinary", "everything-complex", "care-preferences", "mixed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--scenario", action="append", default=[], help="limit to these scenarios")
    p.add_argument("--loader", choices=("api", "bulk"), default=None,
                   help="population loader (default: api up to 2,000 patients, bulk above)")
    p.add_argument("--ingest-patients", type=int, default=300, help="size of the synthetic feed for the ingest scenario (0 = skip)")
    p.add_argument("--out", type=Path, default=None, help="directory for the results (default: bench/results)")
    args = p.parse_args(argv)
    if not have_wrk():
        print("wrk is required (Debian package 'wrk': apt-get install -y wrk)", file=sys.stderr)
        return 2
    opts = R.Options(database=args.database, patients=args.patients, seconds=args.seconds, runs=args.runs,
                     connections=args.connections, scenarios=tuple(args.scenario), ingest_patients=args.ingest_patients,
                     **({"out_dir": args.out} if args.out else {}))
    wanted = lambda name: not opts.scenarios or name in opts.scenarios  # noqa: E731
    stamp = time.strftime("%Y%m%d-%H%M%S")
    url = R.database_url(opts)
    var = R.ROOT / "var" / "bench"
    settings = Settings(database_url=url, var_dir=var, dev_mode=True, base_url="http://127.0.0.1/fhir")
    from exchange.db.migrate import upgrade

    upgrade(url)
    print(f"population: {opts.patients} patients on {opts.database}", flush=True)
    loader = args.loader or ("api" if opts.patients <= 2000 else "bulk")
    load = R.load_population(settings, opts.patients, loader)
    paths = R.scenario_paths(opts.patients)
    results: dict = {"meta": {"stamp": stamp, "database": opts.database, "patients": opts.patients,
                              "runs": opts.runs, "seconds": opts.seconds, "connections": opts.connections,
                              "machine": f"{platform.node()} {platform.machine()} {__import__('os').cpu_count()} cores",
                              "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])},
                     "load": load, "scenarios": [], "figures": {}}
    scen: list[R.ScenarioResult] = []

    def serve(label: str, **flags) -> R.Server:  # noqa: ANN003
        return R.Server(settings.with_(**flags), label)

    full = serve("full")
    try:
        base = R.measure("baseline", full, paths["baseline"], "", opts)
        scen.append(base)
        for name in FULL_SCENARIOS:
            if wanted(name):
                print(f"  {name} (full)", flush=True)
                token = R.gp_token(settings, full)
                scen.append(R.measure(name, full, paths[name], token, opts))
        if wanted("paging"):
            token = R.gp_token(settings, full)
            seen, secs = walk_pages(f"{full.base}/fhir/Observation?patient=Patient/bp0&_count=100", token)
            results["figures"]["paging: Observation for a 2,000-resource patient, _count=100"] = (
                f"{seen} resources in {secs:.2f} s ({seen / secs:.0f} resources/s)")
        results["figures"]["server peak RSS (full stack, MB)"] = round(full.peak_rss_mb(), 1)
    finally:
        full.stop()
    for label, flags, names in (
        ("bare", {"auth_enabled": False, "consent_enabled": False, "audit_enabled": False}, ("read", "search-observation", "everything-ordinary")),
        ("no-consent", {"consent_enabled": False}, ("search-observation",)),
        ("no-audit", {"audit_enabled": False}, ("read",)),
    ):
        names = tuple(n for n in names if wanted(n))
        if not names:
            continue
        srv = serve(label, **flags)
        try:
            for name in names:
                print(f"  {name} ({label})", flush=True)
                scen.append(R.measure(name, srv, paths[name], R.gp_token(settings, srv) if flags.get("auth_enabled", True) else "", opts))
        finally:
            srv.stop()
    for s in scen:
        s.ratio_to_baseline = round(s.rps / base.rps, 3) if base.rps else None
    by = {(s.name, s.server): s for s in scen}
    for name in ("read", "search-observation", "everything-ordinary"):
        if (name, "full") in by and (name, "bare") in by:
            results["figures"][f"{name}: full-stack p50 / bare p50"] = round(by[(name, "full")].p50_ms / max(by[(name, "bare")].p50_ms, 0.001), 2)
    if ("search-observation", "no-consent") in by and ("search-observation", "full") in by:
        results["figures"]["consent cost: search p50 with / without consent"] = round(
            by[("search-observation", "full")].p50_ms / max(by[("search-observation", "no-consent")].p50_ms, 0.001), 2)
    if ("read", "no-audit") in by and ("read", "full") in by:
        results["figures"]["audit cost: read throughput with / without audit"] = round(
            by[("read", "full")].rps / max(by[("read", "no-audit")].rps, 0.001), 3)
    if opts.ingest_patients and wanted("ingest"):
        from bench.ingest import measure_ingest

        results["figures"]["ingest"] = measure_ingest(opts.ingest_patients, opts.database, opts.postgres_url)
    results["scenarios"] = [asdict(s) for s in scen]
    j, m, s = write(results, Path(opts.out_dir), stamp)
    print(Path(m).read_text())
    print(f"results: {j} {m} {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
