"""Parsing and formatting of user-typed frequencies, times and gaps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqtrestore.units import format_frequency, format_time, parse_frequency, parse_gap, parse_time


@pytest.mark.parametrize(
    ("text", "hz"),
    [
        ("3k", 3000.0),
        ("3000", 3000.0),
        ("3.5kHz", 3500.0),
        ("3.5 kHz", 3500.0),
        ("3500Hz", 3500.0),
        ("3K", 3000.0),
        ("0.5k", 500.0),
        (" 8 KHZ ", 8000.0),
        ("44.1khz", 44100.0),
        (".5k", 500.0),
        ("3e3", 3000.0),
    ],
)
def test_parse_frequency_accepts_units(text, hz):
    assert parse_frequency(text) == pytest.approx(hz)


@pytest.mark.parametrize(
    "text", ["", "  ", "-3k", "abc", "3kk", "nan", "inf", "0", "0k", "1e999", "3 k k", "k3"]
)
def test_parse_frequency_rejects_with_one_line_message_quoting_input(text):
    with pytest.raises(ValueError) as error:
        parse_frequency(text)
    message = str(error.value)
    assert repr(text) in message and "3k" in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.2", 1.2),
        ("1.2s", 1.2),
        ("1.2 s", 1.2),
        ("500ms", 0.5),
        ("500 MS", 0.5),
        ("0", 0.0),
        ("90", 90.0),
        ("1:02.5", 62.5),
        ("0:05", 5.0),
        ("75:00", 4500.0),
        ("1:00:02", 3602.0),
        ("2:03:04.25", 7384.25),
    ],
)
def test_parse_time_forms(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "-1", "-0:05", "1:60", "1:99.5", "1:60:00", "1:00:60", "abc", "1.2.3", "1:02:03:04", "1:", ":5"],
)
def test_parse_time_rejects(text):
    with pytest.raises(ValueError) as error:
        parse_time(text)
    assert repr(text) in str(error.value) and "\n" not in str(error.value)


@given(
    hours=st.integers(0, 30),
    minutes=st.integers(0, 59),
    millis=st.integers(0, 59_999),
)
@settings(max_examples=60, deadline=None)
def test_clock_times_add_up(hours, minutes, millis):
    text = f"{hours}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"
    assert parse_time(text) == pytest.approx(hours * 3600 + minutes * 60 + millis / 1000)
    assert parse_time(f"{hours * 60 + minutes}:{millis / 1000:06.3f}") == pytest.approx(parse_time(text))


@pytest.mark.parametrize(
    ("text", "gap"),
    [
        ("1.2:1.5", (1.2, 1.5)),
        ("0:5", (0.0, 5.0)),
        ("500ms:1.5s", (0.5, 1.5)),
        ("1.2-1.5", (1.2, 1.5)),
        ("1.2 - 1.5", (1.2, 1.5)),
        ("1.2..1.5", (1.2, 1.5)),
        ("1:02.5-1:03.1", (62.5, 63.1)),
        ("1:02.5..1:03.1", (62.5, 63.1)),
        ("59.5-1:00.5", (59.5, 60.5)),
        ("1:00:00-1:00:01.5", (3600.0, 3601.5)),
    ],
)
def test_parse_gap_grammar(text, gap):
    assert parse_gap(text) == pytest.approx(gap)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.5:1.2", "ends before it starts"),
        ("1.2:1.2", "ends before it starts"),
        ("-1:2", "negative"),
        ("1:02.5", "ambiguous"),  # looks like a clock time: A:B always means seconds
        ("1:02:1:05", "START-END"),
        ("1:02-", "START-END"),
        ("1-2-3", "START-END"),
        ("1:70-2:00", "below 60"),
        ("a:b", "'a'"),
        ("", "START-END"),
    ],
)
def test_parse_gap_rejects(text, reason):
    with pytest.raises(ValueError, match=reason) as error:
        parse_gap(text)
    assert repr(text) in str(error.value) and "\n" not in str(error.value)


@given(start=st.integers(0, 10_000_000), length=st.integers(2, 600_000))
@settings(max_examples=60, deadline=None)
def test_gap_of_formatted_times_round_trips(start, length):
    start_s, end_s = start / 1000, (start + length) / 1000
    for separator in ("-", "..", " - "):
        text = f"{format_time(start_s)}{separator}{format_time(end_s)}"
        assert parse_gap(text) == pytest.approx((start_s, end_s), abs=1e-9)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.000 s"),
        (2.5, "2.500 s"),
        (59.9996, "1:00.000"),
        (62.5, "1:02.500"),
        (3602.0, "1:00:02.000"),
        (-1.5, "-1.500 s"),
    ],
)
def test_format_time(seconds, text):
    assert format_time(seconds) == text


@given(st.floats(0, 1e6, allow_nan=False, allow_subnormal=False))
def test_format_time_round_trips(seconds):
    assert parse_time(format_time(seconds)) == pytest.approx(seconds, abs=5.0001e-4)


@pytest.mark.parametrize(
    ("hz", "text"),
    [(440, "440 Hz"), (62.5, "62.5 Hz"), (3000, "3 kHz"), (11025, "11.025 kHz"), (3456.78, "3.457 kHz")],
)
def test_format_frequency(hz, text):
    assert format_frequency(hz) == text


@given(st.floats(0.1, 1e6, allow_nan=False))
def test_format_frequency_round_trips(hz):
    assert parse_frequency(format_frequency(hz)) == pytest.approx(hz, abs=0.5 + 1e-9)
