"""Durations: every duration bgdeploy prints reads back (a property test), compound forms, and the schema's
pattern agrees with the parser."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgdeploy.spec.durations import DURATION_PATTERN, format_duration, parse_duration


@given(st.floats(min_value=0, max_value=10_000_000, allow_nan=False, allow_infinity=False))
def test_every_printed_duration_reads_back(seconds: float) -> None:
    printed = format_duration(seconds)
    back = parse_duration(printed)
    # Below a minute to the millisecond, from a minute on to the second.
    assert abs(back - seconds) <= (0.0005 if round(seconds, 3) < 60 else 0.5) + 1e-9, (seconds, printed, back)
    assert format_duration(back) == printed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2m0.5s", 120.5), ("1.5h", 5400)],
)
def test_simple_and_compound_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "1m1h", "1s1m", "1ms1s", "1m1m", "1h 30m", "30mm", "1.s", "-1s", "fast"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="a duration like"):
        parse_duration(text)


_PART = st.sampled_from(["0", "1", "12", "1.5", "0.25"]).flatmap(
    lambda n: st.sampled_from(["h", "m", "s", "ms", ""]).map(lambda u: n + u)
)


@given(st.lists(_PART, min_size=1, max_size=4).map("".join))
def test_the_schema_pattern_and_the_parser_agree(text: str) -> None:
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert bool(re.match(DURATION_PATTERN, text)) == parsed, text


@pytest.mark.parametrize("seconds", [0.0, 1e-05, 0.0004, 59.9994, 59.9996, 60.0, 89.5, 3725.0, 172800.0])
def test_edges_read_back(seconds: float) -> None:
    printed = format_duration(seconds)
    assert "e" not in printed and format_duration(parse_duration(printed)) == printed
