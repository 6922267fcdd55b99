"""Result files: JSON (everything), a Markdown table and an SVG bar chart of the ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(results: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"{stamp}.json"
    jpath.write_text(json.dumps(results, indent=2) + "\n")
    mpath = out_dir / f"{stamp}.md"
    mpath.write_text(table(results))
    spath = out_dir / f"{stamp}.svg"
    spath.write_text(chart(results))
    return jpath, mpath, spath


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# Benchmark {meta['stamp']}",
        "",
        f"Database {meta['database']}, {meta['patients']} patients ({meta.get('resources', '?')} resources), "
        f"{meta['runs']} runs x {meta['seconds']} s, wrk -c {meta['connections']}, machine: {meta['machine']}.",
        f"Command: `{meta['command']}`",
        "",
        "Throughput (req/s) with the stated connections; latency percentiles with one connection.",
        "",
        "| scenario | server | req/s | p50 ms | p90 ms | p99 ms | errors | ratio to baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["scenarios"]:
        ratio = f"{s['ratio_to_baseline']:.3f}" if s.get("ratio_to_baseline") is not None else ""
        lines.append(f"| {s['name']} | {s['server']} | {s['rps']} | {s['p50_ms']} | {s['p90_ms']} | {s['p99_ms']} | {s['errors']} | {ratio} |")
    lines.append("")
    for key, value in results.get("figures", {}).items():
        lines.append(f"- **{key}**: {value}")
    lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Any]) -> str:
    rows = [s for s in results["scenarios"] if s.get("ratio_to_baseline") is not None]
    width, bar_h, left = 720, 22, 260
    height = 40 + bar_h * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<text x="10" y="18" font-weight="bold">Throughput as a fraction of the in-run baseline</text>']
    for k, s in enumerate(rows):
        y = 30 + k * bar_h
        w = max(1, int((width - left - 60) * min(1.0, s["ratio_to_baseline"])))
        parts.append(f'<text x="10" y="{y + 14}">{s["name"]} ({s["server"]})</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w}" height="{bar_h - 6}" fill="#005eb8"/>')
        parts.append(f'<text x="{left + w + 5}" y="{y + 14}">{s["ratio_to_baseline"]:.3f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
