"""Server-drawn SVG bar charts (no JavaScript, no CDN): geometry here, markup in
templates/activity/_chart.html. A series' colour is a CSS class (`series-<tone>`, portal/app.css),
so both themes use the one set of colour variables; counts get whole-number ticks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 30


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    fill: str  # a tone: ok, bad, warn, blue, purple (CSS class series-<tone>)


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


def _nice_step(value: float) -> int:
    """The whole-number tick step (1, 2, 5, 10, 20, ...) at least `value`."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


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
    axis_label: str = "",
    integer: bool = False,
) -> dict[str, Any]:
    """A bar chart: one group per label, its series stacked or side by side. `integer` (counts)
    puts the ticks on whole numbers; `axis_label` names the y axis and its unit."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if stacked:
        top = max((sum(r.get(s.key, 0) for s in series) for r in rows), default=0)
    else:
        top = max((r.get(s.key, 0) for r in rows for s in series), default=0)
    if integer:
        step = _nice_step(top / 4)
        y_max = float(step * max(1, math.ceil(top / step)))
        tick_values = [float(v) for v in range(0, int(y_max) + 1, step)]
    else:
        y_max = _nice_max(top)
        tick_values = [y_max * k / 4 for k in range(5)]
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
        {"y": round(TOP + plot_h - plot_h * v / y_max, 1), "label": _fmt(v)} for v in tick_values
    ]
    every = max(1, math.ceil(len(labels) / 8))
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
        "axis_label": axis_label,
        "axis_y": round(TOP + plot_h / 2, 1),
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
