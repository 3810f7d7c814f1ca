"""Server-drawn SVG bar charts (no JavaScript, no CDN): geometry here, markup in
templates/activity/_chart.html. Colours are SVG presentation attributes (CSP allows them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 28


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    fill: str


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: list[str],
    rows: list[dict[str, float]],
    series: list[Series],
    stacked: bool = True,
    unit: str = "",
) -> dict[str, Any]:
    """A bar chart: one group per label, its series stacked or side by side."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if stacked:
        top = max((sum(r.get(s.key, 0) for s in series) for r in rows), default=0)
    else:
        top = max((r.get(s.key, 0) for r in rows for s in series), default=0)
    y_max = _nice_max(top)
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.7 / (1 if stacked else len(series))
    rects: list[Rect] = []
    for i, (label, row) in enumerate(zip(labels, rows, strict=True)):
        base = float(TOP + plot_h)
        for j, s in enumerate(series):
            value = row.get(s.key, 0)
            if value <= 0:
                continue
            h = value / y_max * plot_h
            x = LEFT + i * slot + slot * 0.15 + (0 if stacked else j * bar_w)
            y = (base - h) if stacked else (TOP + plot_h - h)
            rects.append(
                Rect(
                    round(x, 1),
                    round(y, 1),
                    round(max(bar_w, 1), 1),
                    round(h, 1),
                    s.fill,
                    f"{label}: {_fmt(value)} {s.label.lower()}{unit}",
                )
            )
            if stacked:
                base -= h
    ticks = [
        {"y": round(TOP + plot_h - plot_h * k / 4, 1), "label": _fmt(y_max * k / 4)}
        for k in range(5)
    ]
    every = max(1, math.ceil(len(labels) / 10))
    x_labels = [
        {"x": round(LEFT + i * slot + slot / 2, 1), "label": label}
        for i, label in enumerate(labels)
        if i % every == 0
    ]
    totals = {s.key: sum(r.get(s.key, 0) for r in rows) for s in series}
    desc = "; ".join(f"{s.label}: {_fmt(totals[s.key])}{unit} in total" for s in series)
    return {
        "id": chart_id,
        "title": title,
        "desc": f"{title}. {desc}.",
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": TOP + plot_h,
        "label_y": HEIGHT - 8,
        "rects": rects,
        "ticks": ticks,
        "x_labels": x_labels,
        "series": series,
        "table": list(
            zip(labels, [[_fmt(r.get(s.key, 0)) for s in series] for r in rows], strict=True)
        ),
        "empty": top <= 0,
    }
