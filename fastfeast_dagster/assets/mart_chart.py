"""The marts' own chart: their headline KPIs over the latest days they hold, by day.

Dagster 1.13 plots a numeric metadata entry (asset Overview → Metadata → Plots) either against
materialization time, for the last 100 materializations, or by partition, and by partition only
for the newest 120 partition keys before now: a mart of days loaded last spring shows an empty
plot by partition, and by time a backfill of a month draws thirty points at one minute. So each
mart materialization also carries a markdown entry of its own, `kpi_chart`: an SVG chart (a
`data:` image, which the UI's markdown renderer allows) of the latest 30 days the mart holds,
whatever the date today, and the same numbers as a table under it. The rendering is pure.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape

import dagster as dg
import pandas as pd
import psycopg

from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.marts import kpi_history

HISTORY_DAYS = 30
# How each headline KPI reads (warehouse/marts.py names them).
_FORMATS = {
    "orders": "count",
    "tickets": "count",
    "revenue": "money",
    "average_order_value": "money",
    "average_delivery_minutes": "minutes",
}
_PANEL_WIDTH, _PANEL_HEIGHT, _COLUMNS = 380, 150, 2
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 64, 16, 30, 28
_LINE = "#4f43dd"


def mart_chart(conn: psycopg.Connection, contract: Contract, mart: str) -> dg.MetadataValue:
    """The `kpi_chart` metadata of a mart materialization: its latest days, charted."""
    return dg.MetadataValue.md(
        chart_markdown(mart, kpi_history(conn, contract, mart, HISTORY_DAYS))
    )


def chart_markdown(mart: str, history: pd.DataFrame) -> str:
    """A heading, the chart as an image, and the days as a table, newest first."""
    if history.empty:
        return f"**{mart}**: no day loaded yet"
    days = [_day(key) for key in history["date_key"]]
    kpis = [column for column in history.columns if column != "date_key"]
    svg = svg_chart(days, {kpi: _floats(history[kpi]) for kpi in kpis})
    image = base64.b64encode(svg.encode()).decode()
    span = f"{len(days)} day{'s' if len(days) > 1 else ''}, {days[0]} to {days[-1]}"
    lines = [
        f"**{mart}**: the latest days loaded ({span}; at most {HISTORY_DAYS})",
        "",
        f"![KPIs by day, {span}](data:image/svg+xml;base64,{image})",
        "",
        "| day | " + " | ".join(kpis) + " |",
        "|---|" + "---:|" * len(kpis),
    ]
    for index in reversed(range(len(days))):
        cells = [_show(kpi, _floats(history[kpi])[index]) for kpi in kpis]
        lines.append(f"| {days[index]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg_chart(days: Sequence[str], series: dict[str, list[float | None]]) -> str:
    """One small line chart per KPI, two abreast, the days along each x axis."""
    rows = math.ceil(len(series) / _COLUMNS)
    width, height = _PANEL_WIDTH * _COLUMNS, _PANEL_HEIGHT * rows
    panels = [
        _panel(kpi, days, values, (i % _COLUMNS) * _PANEL_WIDTH, (i // _COLUMNS) * _PANEL_HEIGHT)
        for i, (kpi, values) in enumerate(series.items())
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f'<rect width="{width}" height="{height}" fill="white"/>{"".join(panels)}</svg>'
    )


def _panel(kpi: str, days: Sequence[str], values: list[float | None], left: int, top: int) -> str:
    known = [v for v in values if v is not None]
    latest = next((v for v in reversed(values) if v is not None), None)
    title = f"{kpi}: {_show(kpi, latest)} on {days[-1]}"
    parts = [f'<text x="{left + 8}" y="{top + 18}" font-weight="bold">{escape(title)}</text>']
    x0, x1 = left + _PLOT_LEFT, left + _PANEL_WIDTH - _PLOT_RIGHT
    y0, y1 = top + _PANEL_HEIGHT - _PLOT_BOTTOM, top + _PLOT_TOP
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#999"/>')
    low, high = _range(known)
    for value, y in ((low, y0), (high, y1)):
        parts.append(
            f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end">{escape(_show(kpi, value))}</text>'
        )
    parts.append(f'<text x="{x0}" y="{y0 + 16}">{days[0]}</text>')
    if len(days) > 1:
        parts.append(f'<text x="{x1}" y="{y0 + 16}" text-anchor="end">{days[-1]}</text>')

    def point(index: int, value: float) -> tuple[float, float]:
        x = x0 + (x1 - x0) * (index / (len(days) - 1) if len(days) > 1 else 0.5)
        return x, y0 - (y0 - y1) * (value - low) / (high - low)

    points = [point(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_LINE}"/>' for x, y in points]
    return "".join(parts)


def _range(values: list[float]) -> tuple[float, float]:
    """The y axis: the values' span, or a band around a single value (so a flat line shows)."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def _floats(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(value) else float(value) for value in column]


def _day(date_key: object) -> str:
    text = str(date_key)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def _show(kpi: str, value: float | None) -> str:
    if value is None:
        return "-"
    kind = _FORMATS.get(kpi, "rate")
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "minutes":
        return f"{value:,.1f} min"
    return f"{value:.1%}"
