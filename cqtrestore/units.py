"""Parse and format the frequencies, times and gaps that users type on the command line.

Every parser raises ``ValueError`` with a one-line message that quotes the input and shows valid
examples, fit to print as ``error: <message>``. Ground floor: imports nothing from cqtrestore.

Grammar (case-insensitive, spaces allowed around units and separators):

- frequency: a positive number with an optional unit ``Hz``, ``k`` or ``kHz``: ``3000``, ``3k``,
  ``3.5 kHz``, ``3500Hz``.
- time: plain seconds ``1.2``, ``1.2s`` or ``500ms``; or a clock ``m:ss`` / ``h:mm:ss`` with optional
  decimals on the seconds (``1:02.5`` = 62.5 s, ``1:00:02`` = 3602 s). In clock forms the seconds (and the
  minutes of ``h:mm:ss``) must be below 60.
- gap: see ``parse_gap``.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_FREQUENCY = re.compile(rf"({_NUMBER}(?:e[+-]?\d+)?)\s*(hz|k|khz)?", re.IGNORECASE)
_SECONDS = re.compile(rf"({_NUMBER})\s*(s|ms)?", re.IGNORECASE)
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d*)?)")
_RANGE_SEPARATOR = re.compile(r"\s*(?:\.\.|-)\s*")

FREQUENCY_EXAMPLES = "e.g. 3000, 3k, 3.5kHz or 3500Hz"
TIME_EXAMPLES = "e.g. 1.2, 1.2s, 500ms, 1:02.5 (m:ss) or 1:00:02 (h:mm:ss)"
GAP_EXAMPLES = "e.g. 1.2:1.5 (seconds), 1.2-1.5, 500ms..1.5s or 1:02.5-1:03.1 (clock times)"


def parse_frequency(text: str) -> float:
    """A frequency in Hz from ``3k``, ``3000``, ``3.5kHz``, ``3500 Hz`` (positive and finite)."""
    stripped = str(text).strip()
    if stripped.startswith("-"):
        raise ValueError(f"frequency must be positive, got {text!r} ({FREQUENCY_EXAMPLES})")
    match = _FREQUENCY.fullmatch(stripped)
    if match is None:
        raise ValueError(f"invalid frequency {text!r}: expected a number of Hz, {FREQUENCY_EXAMPLES}")
    value = float(match.group(1)) * (1000.0 if (match.group(2) or "").lower() in ("k", "khz") else 1.0)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"frequency must be positive and finite, got {text!r} ({FREQUENCY_EXAMPLES})")
    return value


def parse_time(text: str) -> float:
    """A time in seconds from ``1.2``, ``1.2s``, ``500ms``, ``1:02.5`` (m:ss) or ``1:00:02`` (h:mm:ss)."""
    stripped = str(text).strip()
    if stripped.startswith("-"):
        raise ValueError(f"time must not be negative, got {text!r} ({TIME_EXAMPLES})")
    if ":" in stripped:
        return _parse_clock(text, stripped)
    return _parse_seconds(text, stripped)


def parse_gap(text: str) -> tuple[float, float]:
    """A (start, end) interval in seconds; the separator rules keep clock times unambiguous.

    - ``START-END`` or ``START..END``: each side is any time ``parse_time`` accepts, clock times included
      (``1:02.5-1:03.1``, ``62.5..63.1``, ``500ms-1.5s``).
    - ``A:B`` with exactly one colon and no ``-``/``..``: both sides are plain seconds (``1.2:1.5``,
      ``500ms:1.5s``); so ``1:02.5`` is NOT a clock time here. A zero-padded side such as ``02`` looks
      like a clock and is refused as ambiguous: write ``1-2`` or ``0:01-0:02`` instead.
    The end must come after the start; times are never negative.
    """
    stripped = str(text).strip()
    if stripped.startswith("-"):
        raise ValueError(f"gap times must not be negative, got {text!r} ({GAP_EXAMPLES})")
    parts = _RANGE_SEPARATOR.split(stripped)
    if len(parts) == 1:
        parts = _split_seconds_pair(text, stripped)
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"invalid gap {text!r}: expected START-END, {GAP_EXAMPLES}")
    start, end = (_parse_gap_side(text, part) for part in parts)
    if end <= start:
        raise ValueError(f"gap {text!r} ends before it starts: the end must come after the start")
    return start, end


def format_time(seconds: float) -> str:
    """A readable time: ``2.500 s`` below a minute, then ``1:02.500`` and ``1:00:02.500``."""
    sign = "-" if seconds < 0 else ""
    millis = round(abs(float(seconds)) * 1000)
    minutes, millis = divmod(millis, 60_000)
    if minutes == 0:
        return f"{sign}{millis / 1000:.3f} s"
    hours, minutes = divmod(minutes, 60)
    seconds_field = f"{millis // 1000:02d}.{millis % 1000:03d}"
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{seconds_field}"
    return f"{sign}{minutes}:{seconds_field}"


def format_frequency(hz: float) -> str:
    """A readable frequency: ``440 Hz``, ``62.5 Hz``, ``3 kHz``, ``11.025 kHz``."""
    if abs(hz) >= 1000:
        return f"{_trim(f'{hz / 1000:.3f}')} kHz"
    return f"{_trim(f'{hz:.1f}')} Hz"


def _trim(number: str) -> str:
    """Drop trailing zeros and a trailing decimal point from a fixed-point number."""
    return number.rstrip("0").rstrip(".") if "." in number else number


def _parse_seconds(text: str, stripped: str) -> float:
    """Plain seconds with an optional ``s`` or ``ms`` unit."""
    match = _SECONDS.fullmatch(stripped)
    if match is None:
        raise ValueError(f"invalid time {text!r}: expected seconds or a clock time, {TIME_EXAMPLES}")
    value = float(match.group(1))
    return value / 1000.0 if (match.group(2) or "").lower() == "ms" else value


def _parse_clock(text: str, stripped: str) -> float:
    """``m:ss(.s)`` or ``h:mm:ss(.s)``; seconds (and the minutes of h:mm:ss) below 60."""
    match = _CLOCK.fullmatch(stripped)
    if match is None:
        raise ValueError(f"invalid time {text!r}: expected m:ss or h:mm:ss, {TIME_EXAMPLES}")
    hours, minutes, seconds = match.group(1), int(match.group(2)), float(match.group(3))
    if seconds >= 60:
        raise ValueError(f"invalid time {text!r}: the seconds of a clock time must be below 60")
    if hours is not None and minutes >= 60:
        raise ValueError(f"invalid time {text!r}: the minutes of h:mm:ss must be below 60")
    return (int(hours or 0) * 60 + minutes) * 60 + seconds


def _split_seconds_pair(text: str, stripped: str) -> list[str]:
    """Split ``A:B`` (one colon, both sides plain seconds) into its two sides."""
    if stripped.count(":") != 1:
        raise ValueError(f"invalid gap {text!r}: write clock times as START-END, {GAP_EXAMPLES}")
    parts = [part.strip() for part in stripped.split(":")]
    if any(re.match(r"0\d", part) for part in parts):
        raise ValueError(
            f"ambiguous gap {text!r}: A:B means seconds; for clock times write START-END, e.g. 1:02-1:03"
        )
    return parts


def _parse_gap_side(text: str, part: str) -> float:
    """One side of a gap, with the error message naming the whole gap."""
    try:
        return parse_time(part)
    except ValueError as error:
        raise ValueError(f"invalid gap {text!r}: {error}") from None
