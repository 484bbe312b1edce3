"""Sticky canary cohorts: which nginx variable keys the split, and which colour nginx picks for a key.

nginx's `split_clients` hashes its key with MurmurHash2 (seed 0) and walks its entries in order, each owning
the next slice of the 32-bit hash range. Listing the NEW colour first makes its slice [0, weight%) grow with
the weight: a key on green at 10% is on green at 50% too. `split_colour` reproduces nginx's arithmetic, so a
test (or an operator) can predict where a user lands without sending a request.
"""

from __future__ import annotations

import re

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995
_BY_RE = re.compile(r"^(?:header:(?P<header>[A-Za-z0-9][A-Za-z0-9-]{0,63})|cookie:(?P<cookie>[A-Za-z0-9_]{1,64})|ip)$")


def nginx_variable(by: str) -> str:
    """The nginx variable holding the cohort key of `rollout.cohort.by` (without the `$`)."""
    match = _BY_RE.match(by)
    if match is None:
        raise ValueError(f"cohort key {by!r} must be header:NAME, cookie:NAME or ip")
    if match.group("header"):
        return "http_" + match.group("header").lower().replace("-", "_")
    if match.group("cookie"):
        return "cookie_" + match.group("cookie")
    return "remote_addr"


def murmur2(data: bytes) -> int:
    """nginx's ngx_murmur_hash2 (MurmurHash2, seed 0, little-endian blocks)."""
    length = len(data)
    h = length & _MASK
    i = 0
    while length - i >= 4:
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def split_colour(key: str, parts: list[tuple[int, str]], rest: str) -> str:
    """The value nginx's `split_clients "key" { W1% v1; ...; * rest; }` gives `key` (weights in percent)."""
    hashed = murmur2(key.encode())
    last = 0
    for percent, value in parts:
        # nginx reads "10%" as 1000 hundredths and scales by 0xffffffff / 10000, truncating.
        last += percent * 100 * _MASK // 10000
        if hashed < last:
            return value
    return rest


def cohort_colour(key: str, new: str, old: str, new_weight: int) -> str:
    """The colour a user with this key gets at this canary weight (the new colour listed first)."""
    if new_weight >= 100:
        return new
    if new_weight <= 0:
        return old
    return split_colour(key, [(new_weight, new)], old)
