"""Keyed masking of PII: HMAC-SHA256 under a secret key, after canonicalising the value.

An unkeyed hash of a phone number or a national id is reversible by brute force in minutes; a
keyed HMAC is not without the key. Canonicalising first makes
`01012345678`, `1012345678` and `+20 101 234 5678` mask to the same token, so masked columns stay
usable as join keys.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fastfeast_dagster.contract import Contract, state_root
from fastfeast_dagster.deployment import refuse_fallback
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
    refuse_fallback(contract.pii.key_env, "a key file in the state dir")
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


def canonical(values: pd.Series, kind: str) -> pa.Array:
    """One representation per value: phones as national digits, emails lower-cased, text trimmed.

    Arrow kernels do the work; values that are not pure ASCII go through `_canonical_python`,
    the definition, because Unicode case mapping (`İ`) and digits (`٠١٢`) differ between Python
    and Arrow's kernels while ASCII behaves the same in both.
    """
    # Arrow trims exactly the characters `str.strip()` does (test_pii pins this).
    text = pc.utf8_trim_whitespace(_arrow_text(values))
    if kind == "email":
        fast = pc.ascii_lower(text)
    elif kind == "phone":
        fast = _ascii_phone_digits(text)
    else:
        return text
    odd = pc.invert(pc.fill_null(pc.string_is_ascii(text), True))
    if not pc.any(odd).as_py():
        return fast
    slow = _canonical_python(pd.Series(pc.filter(text, odd).to_pylist(), dtype="string"), kind)
    return pc.replace_with_mask(fast, odd, pa.array(slow.tolist(), pa.large_string()))


def _arrow_text(values: pd.Series) -> pa.Array:
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        array = pa.array(values.array)
    else:
        array = pa.array(values.astype("string").array)
    chunked = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return chunked.cast(pa.large_string())


def _ascii_phone_digits(text: pa.Array) -> pa.Array:
    """`_canonical_python`'s phone rule, for ASCII text, where RE2's digit class equals Python's."""
    digits = pc.replace_substring_regex(text, r"\D", "")
    international = pc.and_(
        pc.starts_with(digits, _EGYPT_COUNTRY_CODE),
        pc.equal(pc.utf8_length(digits), 12),
    )
    digits = pc.if_else(
        international, pc.utf8_slice_codeunits(digits, len(_EGYPT_COUNTRY_CODE)), digits
    )
    float_text = pc.match_substring_regex(text, r"^\d+\.0$")
    digits = pc.if_else(float_text, pc.utf8_slice_codeunits(text, 0, -2), digits)
    return pc.if_else(pc.equal(pc.utf8_length(digits), 0), text, pc.utf8_ltrim(digits, "0"))


def _canonical_python(text: pd.Series, kind: str) -> pd.Series:
    """The canonical form by definition, with Python's Unicode semantics; `text` is trimmed."""
    if kind == "email":
        return text.str.lower()
    digits = text.str.replace(r"\D", "", regex=True)
    international = digits.str.startswith(_EGYPT_COUNTRY_CODE) & (digits.str.len() == 12)
    digits = digits.mask(international, digits.str.slice(len(_EGYPT_COUNTRY_CODE)))
    # A phone read back as a float keeps a trailing ".0": drop it before comparing digits.
    digits = digits.mask(text.str.fullmatch(r"\d+\.0"), text.str.slice(0, -2))
    return digits.str.lstrip("0").mask(digits.str.len() == 0, text)


def mask(values: pd.Series, kind: str, key: bytes) -> pd.Series:
    """HMAC-SHA256 hex of each canonical value; missing values stay missing."""
    encoded = pc.dictionary_encode(canonical(values, kind))
    tokens = _hmac_hex(encoded.dictionary.cast(pa.large_binary()).to_pylist(), key)
    masked = pc.take(tokens, encoded.indices)
    return pd.Series(pd.arrays.ArrowStringArray(masked), index=values.index)


def mask_lookalikes(values: pd.Series, contract: Contract, key: bytes) -> pd.Series:
    """The values, with every one that looks like PII masked as the PII it looks like.

    "Looks like" is the format of a PII column of the contract: a value shifted into the wrong
    column (an email under `gender`) is as sensitive as in its own. Values that match no such
    format stay as they are.
    """
    text = values.astype("string").str.strip()
    result = values.astype(object).copy()
    for pattern, kind in _lookalike_formats(contract):
        hit = text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
        if hit.any():
            result[hit] = mask(values[hit], kind, key).astype(object).to_numpy()
            text[hit] = pd.NA  # masked once, by the first format it matches
    return result


def _lookalike_formats(contract: Contract) -> list[tuple[str, str]]:
    """(regex, PII kind) of every format a PII column of the contract is checked against."""
    found: dict[str, str] = {}
    for spec in contract.sources.values():
        for column in spec.columns.values():
            if column.pii is not None and column.format is not None:
                found.setdefault(contract.formats[column.format], column.pii)
    return list(found.items())


def _hmac_hex(messages: list[bytes], key: bytes) -> pa.Array:
    """`hmac.digest(key, m, "sha256").hex()` of each distinct message, three times faster.

    HMAC is H((K ^ opad) || H((K ^ ipad) || m)): the two keyed states are hashed once and copied
    per message instead of re-deriving them (and re-fetching the digest) for every value.
    """
    block = hashlib.sha256().block_size
    padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    new_inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded)).copy
    new_outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded)).copy
    digests: list[bytes] = []
    for message in messages:
        inner = new_inner()
        inner.update(message)
        outer = new_outer()
        outer.update(inner.digest())
        digests.append(outer.digest())
    hexed = binascii.hexlify(b"".join(digests))
    width = 2 * hashlib.sha256().digest_size
    offsets = np.arange(0, width * (len(digests) + 1), width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        len(digests), pa.py_buffer(offsets), pa.py_buffer(hexed)
    )
