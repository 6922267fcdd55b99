"""``python -m bench.compare OTHER_TREE``: this checkout's server against another
checkout's (e.g. ``git worktree add /tmp/before <commit>``), side by side in one run.

Both servers are started in turn on the same SQLite bench database (``var/bench/
bench-<N>.db``, loaded by ``python -m bench`` first) with authorisation, consent and
audit on; each round measures every scenario on each (wrk: 8 connections for throughput,
one for the p50), rounds alternate, and the table gives medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx

from bench.driver import run_wrk
from bench.run import ROOT, gp_token, scenario_paths
from exchange.settings import Settings


def _start(tree: str, db: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXCHANGE_DATABASE_URL": db, "EXCHANGE_BASE_URL": f"{base}/fhir",
           "EXCHANGE_VAR_DIR": str(ROOT / "var" / "bench"), "EXCHANGE_AUTH_ENABLED": "1",
           "EXCHANGE_CONSENT_ENABLED": "1", "EXCHANGE_AUDIT_ENABLED": "1", "EXCHANGE_DEV_MODE": "1",
           "PYTHONPATH": tree}
    proc = subprocess.Popen([sys.executable, "-m", "bench.serve", "--port", str(port)], env=env, cwd=tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server of {tree} did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.compare")
    p.add_argument("other", help="the other checkout (the 'before')")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenario", action="append", default=[])
    args = p.parse_args(argv)
    db = f"sqlite:///{ROOT}/var/bench/bench-{args.patients}.db"
    scenarios = args.scenario or ["read", "search-observation", "everything-ordinary"]
    settings = Settings(database_url=db, var_dir=ROOT / "var" / "bench", dev_mode=True, base_url="http://127.0.0.1/fhir")
    paths = scenario_paths(args.patients)
    got: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for _ in range(args.rounds):
        for name, tree in (("before", args.other), ("after", str(ROOT))):
            proc, base = _start(tree, db)
            try:
                token = gp_token(settings, SimpleNamespace(base=base))
                for scen in scenarios:
                    run_wrk(base, paths[scen], token=token, seconds=1)
                    thr = run_wrk(base, paths[scen], token=token, seconds=4, connections=8)
                    lat = run_wrk(base, paths[scen], token=token, seconds=2, connections=1)
                    got.setdefault((scen, name), []).append((thr.rps, lat.p50_ms, thr.errors + thr.non2xx))
            finally:
                proc.terminate()
                proc.wait()
    med = statistics.median
    print("| scenario | before req/s | after req/s | after / before | before p50 ms | after p50 ms | after / before | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen in scenarios:
        b, a = got[(scen, "before")], got[(scen, "after")]
        rb, ra = med(x[0] for x in b), med(x[0] for x in a)
        lb, la = med(x[1] for x in b), med(x[1] for x in a)
        print(f"| {scen} | {rb:.0f} | {ra:.0f} | {ra / rb:.2f} | {lb:.2f} | {la:.2f} | {la / lb:.2f} | "
              f"{sum(x[2] for x in b + a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
