"""The reference data the generator draws from: lookup tables, vocabularies, defect values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fastfeast_dagster.synthetic.render import (
    Frame,
    Kind,
    decimals,
    ints,
    text,
)

CITIES = [(1, "Cairo"), (2, "Giza"), (3, "Alexandria")]
REGIONS = [
    (1, "Nasr City", 1, 12.5), (2, "Heliopolis", 1, 14.25), (3, "Maadi", 1, 15.75),
    (4, "Zamalek", 1, 19.23), (5, "Downtown", 1, 11.4), (6, "New Cairo", 1, 17.9),
    (7, "Shubra", 1, 10.07), (8, "Dokki", 2, 13.6), (9, "Mohandessin", 2, 14.8),
    (10, "Haram", 2, 10.95), (11, "6th of October", 2, 16.3), (12, "Sheikh Zayed", 2, 18.1),
    (13, "Smouha", 3, 12.2), (14, "Sidi Gaber", 3, 11.75), (15, "Miami", 3, 10.5),
    (16, "Stanley", 3, 15.1), (17, "Montaza", 3, 13.35), (18, "Agami", 3, 16.85),
]  # fmt: skip
SEGMENTS = [(1, "Regular", 0, "False"), (2, "VIP", 10, "True")]
CATEGORIES = [
    "Fried Chicken", "Pizza", "Burgers", "Asian", "Seafood",
    "Grill", "Koshary", "Dessert", "Healthy", "Shawarma",
]  # fmt: skip
TEAMS = ["General Support", "Escalations", "VIP Support", "Technical", "Refunds"]
REASON_CATEGORIES = ["Delivery", "Food", "Payment"]
# (name, reason_category_id, severity_level, typical_refund_pct)
REASONS = [
    ("Late delivery", 1, 2, 0.2), ("Order never arrived", 1, 5, 1.0),
    ("Driver behaviour", 1, 3, 0.1), ("Wrong address handling", 1, 2, 0.15),
    ("Missing items", 2, 3, 0.5), ("Wrong order", 2, 4, 0.8), ("Cold food", 2, 2, 0.3),
    ("Food quality", 2, 3, 0.4), ("Double charge", 3, 4, 1.0), ("Refund not received", 3, 3, 0.6),
]  # fmt: skip
CHANNELS = ["app", "chat", "phone", "email"]
# (code, name, first-response minutes, resolution minutes): each priority has its own SLA.
PRIORITIES = [
    ("P1", "Critical", 5, 60), ("P2", "High", 15, 240),
    ("P3", "Medium", 30, 720), ("P4", "Low", 60, 1440),
]  # fmt: skip

MALE = [
    "Ahmed", "Mohamed", "Mahmoud", "Omar", "Youssef", "Mostafa", "Karim", "Hassan", "Ali", "Amr",
    "Tarek", "Khaled", "Sherif", "Hany", "Ibrahim", "Walid", "Ayman", "Ziad", "Hazem", "Adel",
]  # fmt: skip
FEMALE = [
    "Fatma", "Nour", "Mariam", "Salma", "Aya", "Yasmin", "Heba", "Dina", "Rana", "Mona",
    "Sara", "Laila", "Hana", "Reem", "Nada", "Farida", "Malak", "Habiba", "Jana", "Amira",
]  # fmt: skip
LAST = [
    "Hassan", "Mahmoud", "Ibrahim", "Abdelrahman", "Saleh", "Farouk", "Mansour", "Nasser",
    "Fathy", "Gamal", "Shawky", "Zaki", "Helmy", "Ragab", "Soliman", "Fouad", "Kamel", "Badawy",
    "Osman", "Amin", "Hegazy", "Lotfy", "Morsi", "Sabry", "Taha", "Youssef", "Ezzat", "Sayed",
]  # fmt: skip
CUSTOMER_DOMAINS = [
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
    "proton.me", "mail.eg", "tedata.net.eg", "company.com.eg", "fastmail.io",
]  # fmt: skip
AGENT_DOMAINS = ["fastfeast.com", "fastfeast.eg", "support.fastfeast.io"]
RESTAURANT_WORDS = ["House", "Corner", "Express", "Kitchen", "Spot", "Garden"]
PRICE_TIERS = ["Low", "Mid", "High"]
SHIFTS = ["morning", "evening", "night"]
VEHICLES = ["bike", "motorbike", "car"]
SKILLS = ["Junior", "Mid", "Senior", "Lead"]
MOBILE_PREFIXES = ["010", "011", "012", "015"]

BAD_EMAILS = ("notanemail", "missing@domain", "@nodomain.com")
BAD_PHONES = ("abc12345", "0201234567", "12345")

ENTITIES = ("customers", "restaurants", "drivers", "agents")
LOOKUPS = (
    "cities", "regions", "segments", "categories", "teams",
    "reason_categories", "reasons", "channels", "priorities",
)  # fmt: skip
MASTER_UPDATED = "2025-12-31 23:00:00"
PII_COLUMNS = {
    "customers": {"email": "email", "phone": "phone"},
    "drivers": {"driver_phone": "phone", "national_id": "national_id"},
    "agents": {"agent_email": "email", "agent_phone": "phone"},
}
PII_PATTERNS = {
    "email": r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
    "phone": r"^0?1[0125][0-9]{8}$",
    "national_id": r"^[23][0-9]{14}$",
}


def lookup_frames() -> dict[str, Frame]:
    """The nine lookup dimensions, identical in the master and in every batch day."""
    # source → (columns, rows, boolean columns); ids count from 1 in list order.
    tables: dict[str, tuple[tuple[str, ...], list[tuple], set[str]]] = {
        "cities": (
            ("city_id", "city_name", "country", "timezone"),
            [(i, name, "Egypt", "Africa/Cairo") for i, name in CITIES],
            set(),
        ),
        "regions": (("region_id", "region_name", "city_id", "delivery_base_fee"), REGIONS, set()),
        "segments": (
            ("segment_id", "segment_name", "discount_pct", "priority_support"),
            SEGMENTS,
            {"priority_support"},
        ),
        "categories": (("category_id", "category_name"), _numbered(CATEGORIES), set()),
        "teams": (("team_id", "team_name"), _numbered(TEAMS), set()),
        "reason_categories": (
            ("reason_category_id", "category_name"),
            _numbered(REASON_CATEGORIES),
            set(),
        ),
        "reasons": (
            (
                "reason_id",
                "reason_name",
                "reason_category_id",
                "severity_level",
                "typical_refund_pct",
            ),
            [(i, *reason) for i, reason in enumerate(REASONS, 1)],
            set(),
        ),
        "channels": (("channel_id", "channel_name"), _numbered(CHANNELS), set()),
        "priorities": (
            (
                "priority_id",
                "priority_code",
                "priority_name",
                "sla_first_response_min",
                "sla_resolution_min",
            ),
            [(i, *priority) for i, priority in enumerate(PRIORITIES, 1)],
            set(),
        ),
    }
    return {name: _table(*table) for name, table in tables.items()}


def _numbered(names: list[str]) -> list[tuple[int, str]]:
    return list(enumerate(names, 1))


def _table(columns: tuple[str, ...], rows: list[tuple], flags: set[str]) -> Frame:
    """A frame of literal rows: ints and floats render as numbers, the rest as text."""
    arrays: dict[str, pa.Array] = {}
    kinds: dict[str, Kind] = {}
    for name, values in zip(columns, zip(*rows, strict=True), strict=True):
        if name in flags:
            arrays[name], kinds[name] = text(list(values)), "bool"
        elif all(isinstance(value, int) for value in values):
            arrays[name], kinds[name] = ints(np.array(values)), "number"
        elif all(isinstance(value, float) for value in values):
            arrays[name], kinds[name] = decimals(np.array(values)), "number"
        else:
            arrays[name] = text(list(values))
    return Frame(arrays, kinds)


def region_city(region_ids: np.ndarray) -> np.ndarray:
    cities = np.array([0] + [r[2] for r in REGIONS])
    return cities[np.asarray(region_ids, dtype=np.int64)]
