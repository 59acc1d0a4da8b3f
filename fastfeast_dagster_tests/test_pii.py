"""Keyed masking: stable across representations, keyed, and the key is handled safely."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest

from fastfeast_dagster import pii
from fastfeast_dagster.settings import Contract


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
