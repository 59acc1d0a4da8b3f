"""Keyed masking of PII: HMAC-SHA256 under a secret key, after canonicalising the value.

An unkeyed hash of a phone number or a national id is reversible by brute force in minutes (the
reference's §12 D1); a keyed HMAC is not without the key. Canonicalising first (§12 D2) makes
`01012345678`, `1012345678` and `+20 101 234 5678` mask to the same token, so masked columns stay
usable as join keys.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

from fastfeast_dagster.settings import Contract, state_root
from fastfeast_dagster.warehouse.connection import uses_embedded_server

KEY_FILE_NAME = "pii.key"
_EGYPT_COUNTRY_CODE = "20"


class PiiKeyError(RuntimeError):
    """No key is available, and this deployment is not allowed to make one up."""


def load_key(contract: Contract) -> bytes:
    """The key from the environment, or (embedded default only) a 0600 file in the state dir."""
    from_env = os.environ.get(contract.pii.key_env)
    if from_env:
        return from_env.encode()
    if not uses_embedded_server(contract):
        # An external warehouse must not get tokens from a key that lives on one laptop.
        raise PiiKeyError(
            f"{contract.pii.key_env} is not set; it is required when FASTFEAST_DATABASE_URL is"
        )
    path = state_root(contract) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return Path(path).read_text().strip().encode()


def canonical(values: pd.Series, kind: str) -> pd.Series:
    """One representation per value: phones as national digits, emails lower-cased, text trimmed."""
    text = values.astype("string").str.strip()
    if kind == "email":
        return text.str.lower()
    if kind == "phone":
        digits = text.str.replace(r"\D", "", regex=True)
        international = digits.str.startswith(_EGYPT_COUNTRY_CODE) & (digits.str.len() == 12)
        digits = digits.mask(international, digits.str.slice(len(_EGYPT_COUNTRY_CODE)))
        # A phone read back as a float keeps a trailing ".0": drop it before comparing digits.
        digits = digits.mask(text.str.fullmatch(r"\d+\.0"), text.str.slice(0, -2))
        return digits.str.lstrip("0").mask(digits.str.len() == 0, text)
    return text


def mask(values: pd.Series, kind: str, key: bytes) -> pd.Series:
    """HMAC-SHA256 hex of each canonical value; missing values stay missing."""
    canon = canonical(values, kind)
    # One HMAC per distinct value; hmac.digest is the one-shot C path (no HMAC object per value).
    tokens = {
        value: hmac.digest(key, value.encode(), "sha256").hex()
        for value in canon.dropna().unique().tolist()
    }
    return canon.map(tokens).astype("string")
