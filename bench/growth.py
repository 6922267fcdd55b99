"""``python -m bench.growth``: how latency changes with the size of the record, measured
side by side in one run (issue 10, "Growth").

    python -m bench.growth --database postgres --sizes 1000 10000 100000

One full-stack server (authorisation, consent and audit on) per population size runs at
the same time; each round measures every scenario on every size in turn (one connection,
so the median is the service time), so the machine's noise falls on all sizes alike. The
table gives each size's median and its ratio to the smallest size. Populations are
loaded (``--loader bulk``) when missing, as by ``python -m bench``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench import run as R
from bench.driver import have_wrk, run_wrk
from exchange.settings import Settings

SCENARIOS = ("read", "search-observation", "search-patient-identifier", "everything-ordinary",
             "everything-complex", "care-preferences")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.growth")
    p.add_argument("--database", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--scenario", action="append", default=[])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=R.ROOT / "bench" / "results")
    args = p.parse_args(argv)
    if not have_wrk():
        print("wrk is required (Debian package 'wrk')", file=sys.stderr)
        return 2
    scenarios = tuple(args.scenario) or SCENARIOS
    sizes = sorted(set(args.sizes))
    from exchange.db.migrate import upgrade

    servers: dict[int, tuple[R.Server, str, dict[str, list[str]]]] = {}
    try:
        for n in sizes:
            opts = R.Options(database=args.database, patients=n)
            url = R.database_url(opts)
            upgrade(url)
            settings = Settings(database_url=url, var_dir=R.ROOT / "var" / "bench", dev_mode=True,
                                base_url="http://127.0.0.1/fhir")
            print(f"population {n}: {R.load_population(settings, n, 'bulk')}", flush=True)
            srv = R.Server(settings, f"full-{n}")
            servers[n] = (srv, R.gp_token(settings, srv), R.scenario_paths(n))
        samples: dict[tuple[str, int], list[float]] = {}
        for name in scenarios:  # warm-up
            for srv, token, paths in servers.values():
                run_wrk(srv.base, paths[name], token=token, seconds=1, connections=1)
        for r in range(args.runs):
            for name in scenarios:
                for n, (srv, token, paths) in servers.items():
                    got = run_wrk(srv.base, paths[name], token=token, seconds=args.seconds, connections=1)
                    if got.errors or got.non2xx:
                        raise RuntimeError(f"{name} at {n}: {got.errors} errors, {got.non2xx} non-2xx")
                    samples.setdefault((name, n), []).append(got.p50_ms)
            print(f"  round {r + 1}/{args.runs} done", flush=True)
    finally:
        for srv, _t, _p in servers.values():
            srv.stop()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = {name: {n: round(statistics.median(samples[(name, n)]), 2) for n in sizes} for name in scenarios}
    command = "python -m bench.growth " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"growth-{stamp}.json").write_text(json.dumps(
        {"command": command, "database": args.database, "sizes": sizes, "runs": args.runs,
         "seconds": args.seconds, "p50_ms": table, "samples": {f"{k[0]}@{k[1]}": v for k, v in samples.items()}},
        indent=2))
    lines = [f"# Growth {stamp}", "", f"`{command}` ({args.database}; full stack; p50 ms with one connection, "
             f"median of {args.runs} interleaved rounds)", "",
             "| scenario | " + " | ".join(f"{n:,}" for n in sizes) + " | " +
             " | ".join(f"{n:,} / {sizes[0]:,}" for n in sizes[1:]) + " |",
             "|---|" + "---:|" * (2 * len(sizes) - 1)]
    for name in scenarios:
        row = table[name]
        lines.append(f"| {name} | " + " | ".join(f"{row[n]}" for n in sizes) + " | " +
                     " | ".join(f"{row[n] / max(row[sizes[0]], 0.001):.2f}" for n in sizes[1:]) + " |")
    (args.out / f"growth-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
