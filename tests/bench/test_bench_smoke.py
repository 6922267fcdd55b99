"""The benchmark harness runs end to end (issue 10): a tiny population, one scenario,
results written with the in-run baseline and its ratios. No timing is asserted (speed is
measured by ``make bench``, never by tests); this only proves the harness still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.driver import have_wrk

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_and_writes_results(tmp_path: Path) -> None:
    if not have_wrk():
        if os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1":  # CI: .ci/run installs wrk
            pytest.fail("wrk is required for the benchmark harness (Debian package 'wrk')")
        pytest.skip("wrk is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--patients", "6", "--scenario", "read", "--seconds", "1", "--runs", "1",
         "--ingest-patients", "0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (result,) = tmp_path.glob("*.json")
    data = json.loads(result.read_text())
    names = {(s["name"], s["server"]) for s in data["scenarios"]}
    assert {("baseline", "full"), ("read", "full"), ("read", "bare"), ("read", "no-audit")} <= names
    read = next(s for s in data["scenarios"] if s["name"] == "read" and s["server"] == "full")
    assert read["errors"] == 0 and read["rps"] > 0 and read["ratio_to_baseline"] is not None
    assert "read: full-stack p50 / bare p50" in data["figures"]
    assert result.with_suffix(".md").is_file() and result.with_suffix(".svg").is_file()


def test_growth_runs_sizes_side_by_side(tmp_path: Path) -> None:
    if not have_wrk():
        if os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1":
            pytest.fail("wrk is required for the benchmark harness (Debian package 'wrk')")
        pytest.skip("wrk is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "bench.growth", "--database", "sqlite", "--sizes", "6", "8", "--scenario", "read",
         "--runs", "1", "--seconds", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (result,) = tmp_path.glob("growth-*.json")
    data = json.loads(result.read_text())
    assert data["sizes"] == [6, 8] and set(data["p50_ms"]["read"]) == {"6", "8"}
    assert "| read |" in result.with_suffix(".md").read_text()
