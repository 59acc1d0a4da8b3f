"""Keyed masking: stable across representations, keyed, and the key is handled safely."""

from __future__ import annotations

import hmac
import random
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastfeast_dagster import pii
from fastfeast_dagster.contract import TEXT_DTYPE, Contract


def test_the_same_phone_masks_the_same_way_in_every_representation() -> None:
    phones = pd.Series(["01012345678", "1012345678", "+20 101 234 5678", "1012345678.0"])
    masked = pii.mask(phones, "phone", b"key")
    assert masked.nunique() == 1
    assert len(masked.iloc[0]) == 64
    assert masked.iloc[0] not in set(phones)


def test_emails_mask_case_insensitively_and_nulls_stay_null() -> None:
    masked = pii.mask(pd.Series(["A@X.io", " a@x.io", None]), "email", b"key")
    assert masked.iloc[0] == masked.iloc[1]
    assert pd.isna(masked.iloc[2])


def test_a_different_key_gives_different_tokens() -> None:
    values = pd.Series(["29001011234567"])
    assert pii.mask(values, "text", b"one").iloc[0] != pii.mask(values, "text", b"two").iloc[0]


def _reference_mask(values: pd.Series, kind: str, key: bytes) -> list[str | None]:
    """The masking rule by definition: Python string semantics, then `hmac.digest` per value."""
    text = values.astype("string").str.strip()
    if kind == "email":
        text = text.str.lower()
    elif kind == "phone":
        digits = text.str.replace(r"\D", "", regex=True)
        international = digits.str.startswith("20") & (digits.str.len() == 12)
        digits = digits.mask(international, digits.str.slice(2))
        digits = digits.mask(text.str.fullmatch(r"\d+\.0"), text.str.slice(0, -2))
        text = digits.str.lstrip("0").mask(digits.str.len() == 0, text)
    return [
        None if pd.isna(value) else hmac.digest(key, value.encode(), "sha256").hex()
        for value in text
    ]


_AWKWARD = [
    *["01012345678", "+20 101 234 5678", "1012345678.0", " 0101 ", "", "   ", None, "0", "00.0"],
    *["A@X.io", "İSTANBUL@x.io", "Straße@x.de", "ǅ@x", "ﬃ@x.io", "K@x", "ΣΑΣ", "nan"],
    # Arabic-Indic digits: Python's digit class matches them, RE2's does not.
    *["\u0660\u0661\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "+\u0662\u0660 101"],
    *["0\u0661\u0662", "१२३", "201012345678", "2010123456789", "x.0", ".0"],
    *["\u00a0012\u2003", "\x1c01\x1f", "\t\n", "phone: 010-1234-5678", "12345.00"],
]


@pytest.mark.parametrize("kind", ["phone", "email", "text"])
@pytest.mark.parametrize("key", [b"key", b"", b"k" * 100])
def test_tokens_equal_the_definition_for_awkward_values(kind: str, key: bytes) -> None:
    """The vectorised path gives the digests `hmac.digest` gives, Unicode and long keys included."""
    rng = random.Random(7)
    alphabet = list("0123456789 +-.()aAİ\u0131ß\u0660\u0661\u06f2@")
    values = _AWKWARD + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(3000)
    ]
    for dtype in (object, "string", TEXT_DTYPE):
        series = pd.Series(values, dtype=dtype)
        masked = pii.mask(series, kind, key)
        assert [None if pd.isna(v) else v for v in masked] == _reference_mask(series, kind, key)


def test_trimming_removes_exactly_what_str_strip_removes() -> None:
    spaces = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
    padded = pd.Series([f"{space}x{space}" for space in spaces] + ["\u200bx"], dtype=TEXT_DTYPE)
    assert list(pii.mask(padded, "text", b"k")) == _reference_mask(padded, "text", b"k")


def test_embedded_mode_creates_a_private_key_file_once(
    contract: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(contract.pii.key_env, raising=False)
    monkeypatch.setenv("FASTFEAST_STATE_DIR", str(tmp_path))
    first = pii.load_key(contract)
    path = tmp_path / pii.KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pii.load_key(contract) == first
    monkeypatch.setenv(contract.pii.key_env, "from-the-environment")
    assert pii.load_key(contract) == b"from-the-environment"


def test_an_external_warehouse_requires_an_explicit_key(
    contract: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(contract.pii.key_env, raising=False)
    monkeypatch.setenv("FASTFEAST_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTFEAST_DATABASE_URL", "postgresql://elsewhere/db")
    with pytest.raises(pii.PiiKeyError, match="FASTFEAST_PII_KEY is not set"):
        pii.load_key(contract)
    assert not (tmp_path / pii.KEY_FILE_NAME).exists()
