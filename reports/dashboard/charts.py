"""Charts drawn on the server as inline SVG: no script, no CDN, and the page's HTML table next
to each chart holds the same figures. Pixel positions are floats; money stays integers and is
only formatted (format_amount) for the labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH_PX, HEIGHT_PX = 720, 260
PAD_LEFT_PX, PAD_RIGHT_PX, PAD_TOP_PX, PAD_BOTTOM_PX = 110, 16, 16, 48
GRID_LINES = 4
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")
SERIES_MAX = len(COLORS)
BARS_MAX = 24


def line_chart(
    title: str, days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]],
    label: Callable[[int], str],
) -> Markup:  # fmt: skip
    """One line per series over ``days``; ``label`` formats a y value (an amount)."""
    assert len(series) <= SERIES_MAX and all(len(v) == len(days) for _, v in series)
    values = [v for _, line in series for v in line] or [0]
    low, high = min(0, *values), max(0, *values)
    span = (high - low) or 1
    plot_w = WIDTH_PX - PAD_LEFT_PX - PAD_RIGHT_PX
    plot_h = HEIGHT_PX - PAD_TOP_PX - PAD_BOTTOM_PX

    def x(i: int) -> float:
        return PAD_LEFT_PX + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return PAD_TOP_PX + plot_h * (high - v) / span

    parts = [_open(title)]
    for step in range(GRID_LINES + 1):
        v = low + span * step // GRID_LINES
        parts.append(f'<line x1="{PAD_LEFT_PX}" x2="{WIDTH_PX - PAD_RIGHT_PX}" y1="{y(v):.1f}" '
                     f'y2="{y(v):.1f}" stroke="#e5e7eb"/><text x="{PAD_LEFT_PX - 6}" '
                     f'y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#374151">'
                     f"{escape(label(v))}</text>")  # fmt: skip
    for i in sorted({0, len(days) // 2, len(days) - 1}) if days else []:
        anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT_PX - PAD_BOTTOM_PX + 16}" '
                     f'text-anchor="{anchor}" font-size="11" fill="#374151">'
                     f"{escape(days[i])}</text>")  # fmt: skip
    for index, (name, line) in enumerate(series):
        color = COLORS[index]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(f'<rect x="{PAD_LEFT_PX + 160 * (index % 4)}" '
                     f'y="{HEIGHT_PX - 22 + 0 * index}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{PAD_LEFT_PX + 14 + 160 * (index % 4)}" y="{HEIGHT_PX - 13}" '
                     f'font-size="11" fill="#111827">{escape(name)}</text>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(title: str, bars: Sequence[tuple[str, int, str]]) -> Markup:
    """Horizontal bars: (label, value >= 0, the value's text)."""
    bars = list(bars)[:BARS_MAX]
    row_px = 22
    height = PAD_TOP_PX + row_px * max(len(bars), 1) + 8
    high = max([value for _, value, _ in bars] + [1])
    plot_w = WIDTH_PX - PAD_LEFT_PX - 170
    parts = [_open(title, height)]
    for index, (name, value, text) in enumerate(bars):
        top = PAD_TOP_PX + row_px * index
        width = plot_w * max(value, 0) / high
        parts.append(f'<text x="{PAD_LEFT_PX - 6}" y="{top + 14}" text-anchor="end" '
                     f'font-size="12" fill="#111827">{escape(name)}</text>'
                     f'<rect x="{PAD_LEFT_PX}" y="{top + 3}" width="{width:.1f}" height="14" '
                     f'fill="{COLORS[index % SERIES_MAX]}"/>'
                     f'<text x="{PAD_LEFT_PX + width + 6:.1f}" y="{top + 14}" font-size="12" '
                     f'fill="#374151">{escape(text)}</text>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(title: str, height: int = HEIGHT_PX) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH_PX}" '
            f'height="{height}" viewBox="0 0 {WIDTH_PX} {height}" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>")  # fmt: skip
