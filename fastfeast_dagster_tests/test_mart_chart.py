"""The marts' own chart (assets/mart_chart.py): the latest loaded days, whatever the date today.

The chart in the UI, in a real browser, is in test_dev.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import xml.etree.ElementTree as ET

import pandas as pd
import psycopg
import pytest

from fastfeast_dagster.assets.mart_chart import HISTORY_DAYS, chart_markdown
from fastfeast_dagster.contract import Contract
from fastfeast_dagster.warehouse.ddl import apply_schema
from fastfeast_dagster.warehouse.marts import kpi_history

SVG = "{http://www.w3.org/2000/svg}"
FIRST = dt.date(2025, 1, 20)  # long before the wall clock: the point of the chart


def _key(day: dt.date) -> int:
    return int(day.strftime("%Y%m%d"))


def _svg(markdown: str) -> ET.Element:
    (encoded,) = re.findall(r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    return ET.fromstring(base64.b64decode(encoded))


def test_the_history_is_the_latest_days_the_mart_holds_with_weighted_rates(
    conn: psycopg.Connection, contract: Contract
) -> None:
    apply_schema(conn, contract)
    days = [FIRST + dt.timedelta(days=2 * n) for n in range(HISTORY_DAYS + 5)]  # with gaps
    with conn.transaction():
        for n, day in enumerate(days):
            # Two regions a day: 10 orders with 1 cancelled, and 30 + n with none.
            conn.execute(
                "INSERT INTO mart_orders_daily (date_key, region_id, orders, delivered, revenue,"
                " cancellation_rate, refund_rate) VALUES (%s, 1, 10, 9, 90, 0.1, 0),"
                " (%s, 2, %s, %s, 300, 0, 0)",
                (_key(day), _key(day), 30 + n, 30 + n),
            )
    history = kpi_history(conn, contract, "mart_orders_daily", HISTORY_DAYS)
    assert list(history["date_key"]) == [_key(day) for day in days[-HISTORY_DAYS:]]
    last = history.iloc[-1]
    orders = 10 + 30 + len(days) - 1
    assert last["orders"] == orders
    assert float(last["cancellation_rate"]) == pytest.approx(1 / orders)
    assert float(last["average_order_value"]) == pytest.approx(390 / (9 + orders - 10))


HISTORY = pd.DataFrame(
    {
        "date_key": [20250120, 20250122, 20250125],
        "orders": [40, 41, None],
        "cancellation_rate": [0.025, 0.0244, 0.03],
    }
)


def test_the_chart_draws_each_kpi_over_the_days_and_the_table_lists_them_newest_first() -> None:
    markdown = chart_markdown("mart_orders_daily", HISTORY)
    assert markdown.startswith(
        "**mart_orders_daily**: the latest days loaded"
        " (3 days, 2025-01-20 to 2025-01-25; at most 30)"
    )
    svg = _svg(markdown)
    assert [len(line.get("points", "").split()) for line in svg.iter(f"{SVG}polyline")] == [2, 3]
    assert len(list(svg.iter(f"{SVG}circle"))) == 5  # one per known value
    texts = {element.text for element in svg.iter(f"{SVG}text")}
    assert {"2025-01-20", "2025-01-25", "orders: 41 on 2025-01-25"} <= texts
    assert "cancellation_rate: 3.0% on 2025-01-25" in texts
    rows = [line for line in markdown.splitlines() if line.startswith("| 2025")]
    assert rows == [
        "| 2025-01-25 | - | 3.0% |",
        "| 2025-01-22 | 41 | 2.4% |",
        "| 2025-01-20 | 40 | 2.5% |",
    ]


def test_a_single_day_or_none_still_renders() -> None:
    one = chart_markdown("mart_tickets_daily", HISTORY.iloc[:1])
    assert len(list(_svg(one).iter(f"{SVG}circle"))) == 2
    assert chart_markdown("mart_tickets_daily", HISTORY.iloc[:0]) == (
        "**mart_tickets_daily**: no day loaded yet"
    )
