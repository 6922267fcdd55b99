"""Server-rendered SVG charts for the IG console (no scripts, no CDN).

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` for screen
readers and a ``<title>`` tooltip on every bar; the pages also show the same numbers in
a plain table.
"""

from __future__ import annotations

from markupsafe import Markup, escape


def column_chart(points: list[tuple[str, int]], title: str, *, width: int = 720,
                 height: int = 220, colour: str = "#005eb8", chart_id: str = "volume") -> Markup:
    """Vertical bars, one per (label, value), e.g. accesses per day."""
    left, bottom, top = 48, 36, 16
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((v for _, v in points), default=0) or 1
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.8, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="t-{chart_id} d-{chart_id}">',
        f'<title id="t-{chart_id}">{escape(title)}</title>',
        f'<desc id="d-{chart_id}">{len(points)} bars; highest value {peak}.</desc>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#425563"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#425563"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="12">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="12">0</text>',
    ]
    label_every = max(1, n // 8)
    for i, (label, value) in enumerate(points):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{escape(label)}: {value}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" font-size="11" '
                         f'text-anchor="middle">{escape(label[5:] if len(label) == 10 else label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(items: list[tuple[str, int]], title: str, *, width: int = 720,
              colour: str = "#d5281b", chart_id: str = "bars") -> Markup:
    """Horizontal bars, one per (label, value), e.g. break-glass events by organisation."""
    row_h, label_w = 26, 160
    height = max(len(items), 1) * row_h + 20
    peak = max((v for _, v in items), default=0) or 1
    plot_w = width - label_w - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="t-{chart_id}">',
        f'<title id="t-{chart_id}">{escape(title)}</title>',
    ]
    if not items:
        parts.append('<text x="8" y="20" font-size="14">None in this period.</text>')
    for i, (label, value) in enumerate(items):
        y = 10 + i * row_h
        w = plot_w * value / peak
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13">'
                     f'{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
                     f'fill="{colour}"><title>{escape(label)}: {value}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="13">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
