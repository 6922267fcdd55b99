"""Load drivers: wrk (C; the default, from Debian's package) with a Lua script that
varies the URL per request, and a small httpx driver for walking paging links.

A Python httpx client saturates near 500 req/s on these machines (shared/notes), so
throughput is always measured with wrk.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
local paths = {}
local token = os.getenv("BENCH_TOKEN") or ""
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = (i % #paths) + 1
  local headers = {["Accept"] = "application/fhir+json"}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", paths[i], headers)
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH p50=%d p90=%d p99=%d errors=%d non2xx=%d reqs=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests))
end
"""


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non2xx: int
    requests: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(base: str, paths: list[str], *, token: str = "", seconds: float = 5, connections: int = 8,
            threads: int = 1) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "paths.lua"
        script.write_text(LUA)
        plist = Path(tmp) / "paths.txt"
        plist.write_text("\n".join(paths) + "\n")
        env = {"BENCH_PATHS": str(plist), "BENCH_TOKEN": token, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
             "-s", str(script), base],
            capture_output=True, text=True, env=env, timeout=seconds + 60, check=False,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) if "Requests/sec" in out else 0.0
    m = re.search(r"BENCH p50=(\d+) p90=(\d+) p99=(\d+) errors=(\d+) non2xx=(\d+) reqs=(\d+)", out)
    if not m:
        raise RuntimeError(f"wrk produced no result: {out[-500:]}")
    p50, p90, p99, errors, non2xx, reqs = (int(x) for x in m.groups())
    return LoadResult(rps, p50 / 1000, p90 / 1000, p99 / 1000, errors, non2xx, reqs)


def walk_pages(url: str, token: str) -> tuple[int, float]:
    """Follow next links from ``url``; returns (resources seen, seconds)."""
    import httpx

    seen = 0
    start = time.perf_counter()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=60) as http:
        next_url: str | None = url
        while next_url:
            page = http.get(next_url).json()
            seen += sum(1 for e in page.get("entry", []) if e.get("search", {}).get("mode") == "match")
            links = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
            next_url = links[0] if links else None
    return seen, time.perf_counter() - start
