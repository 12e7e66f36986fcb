"""PNG spectrograms without matplotlib: a PNG writer, a magma-like colormap and marked comparison plots.

Images are uint8 arrays (height, width, 3); row 0 is the top. The frequency axis is linear from 0 Hz to
Nyquist by default, or logarithmic from ``min_hz`` to Nyquist; time runs left to right over the whole
clip. Ground floor: numpy and the standard library only (plus the formatting helpers of ``units``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .units import format_frequency, format_time

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Eight anchors of a dark-purple-to-cream ramp (magma-like): luminance rises monotonically.
COLORMAP_ANCHORS = np.array(
    [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129],
     [181, 54, 122], [229, 80, 100], [251, 135, 97], [252, 253, 191]],
    dtype=np.float64,
)  # fmt: skip
REGION_COLOUR = (0, 200, 255)
CUTOFF_COLOUR = (80, 255, 120)
RESPONSE_COLOUR = (255, 255, 255)
RESPONSE_WIDTH = 200  # columns of the filter-response curve, 0 dB at the right edge
RESPONSE_DB = -60.0  # the level at the curve strip's left edge
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (225, 225, 225)
REGION_BAR_ROWS = 5
PANEL_GAP_ROWS = 4
TEXT_SCALE = 2
LOG_MIN_HZ = 30.0  # bottom of the logarithmic frequency axis
# A 3x5 bitmap font: each glyph is 15 bits, five rows of three, top row first.
_GLYPHS = """
A 010101111101101 B 110101110101110 C 011100100100011 D 110101101101110 E 111100110100111
F 111100110100100 G 011100101101011 H 101101111101101 I 111010010010111 J 001001001101010
K 101101110101101 L 100100100100111 M 101111111101101 N 110101101101101 O 010101101101010
P 110101110100100 Q 010101101110011 R 110101110101101 S 011100010001110 T 111010010010010
U 101101101101111 V 101101101101010 W 101101111111101 X 101101010101101 Y 101101010010010
Z 111001010100111 0 111101101101111 1 010110010010111 2 110001010100111 3 110001010001110
4 101101111001001 5 111100110001110 6 011100111101111 7 111001010010010 8 111101111101111
9 111101111001110 . 000000000000010 , 000000000010100 : 000010000010000 - 000000111000000
/ 001001010100100 ( 010100100100010 ) 010001001001010 % 101001010100101 _ 000000000000111
+ 000010111010000 = 000111000111000 ? 110001010000010 | 010010010010010 ; 000010000010100
"""
FONT = {
    char: np.array([bit == "1" for bit in bits], dtype=bool).reshape(5, 3)
    for char, bits in zip(_GLYPHS.split()[::2], _GLYPHS.split()[1::2], strict=True)
} | {" ": np.zeros((5, 3), dtype=bool)}


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write a uint8 (height, width, 3) image as an 8-bit RGB PNG (no filtering, zlib level 6)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(
            f"a PNG image must be uint8 of shape (height, width, 3), got {rgb.dtype} {rgb.shape}"
        )
    height, width = rgb.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    data = PNG_SIGNATURE + _chunk(b"IHDR", header)
    data += _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(data)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to uint8 RGB by linear interpolation between the anchors."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    positions = np.linspace(0.0, 1.0, len(COLORMAP_ANCHORS))
    channels = [np.interp(values, positions, COLORMAP_ANCHORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def spectrogram_db(
    audio: np.ndarray,
    sample_rate: int,
    height: int = 256,
    width: int = 1024,
    n_fft: int = 2048,
    log_frequency: bool = False,
    min_hz: float = LOG_MIN_HZ,
) -> np.ndarray:
    """STFT power in dB on the image grid (height, width): each pixel is the loudest bin in its row band,
    averaged over up to 4 Hann frames spread across its column; channels are mixed to mono."""
    mono = _mono(audio)
    n_fft = min(n_fft, 1 << (mono.size.bit_length() - 1))
    span = mono.size / width
    per_column = int(np.clip(np.ceil(span / n_fft), 1, 4))
    centres = ((np.arange(width * per_column) + 0.5) * (mono.size / (width * per_column))).astype(np.int64)
    padded, window = np.pad(mono, n_fft // 2, mode="reflect"), np.hanning(n_fft)
    power = np.empty((width * per_column, n_fft // 2 + 1))
    for first in range(0, len(centres), 256):  # bounded memory
        samples = centres[first : first + 256, None] + np.arange(n_fft)
        power[first : first + 256] = np.abs(np.fft.rfft(padded[samples] * window, axis=-1)) ** 2
    power = power.reshape(width, per_column, -1).mean(axis=1)
    edges = _row_edges(height, sample_rate, log_frequency, min_hz) * n_fft / sample_rate
    first_bins = np.clip(np.rint(edges[:-1]).astype(np.int64), 0, n_fft // 2)
    stop = int(np.clip(np.rint(edges[-1]), first_bins[-1] + 1, n_fft // 2 + 1))
    rows = np.maximum.reduceat(power[:, :stop], first_bins, axis=1)  # (width, height), lowest row first
    return 10 * np.log10(np.maximum(rows.T[::-1], 1e-20))


def frequency_row(
    hz: float, sample_rate: int, height: int, log_frequency: bool = False, min_hz: float = LOG_MIN_HZ
) -> int | None:
    """The image row (0 = top) that shows ``hz``, or None when it is off the axis."""
    edges = _row_edges(height, sample_rate, log_frequency, min_hz)
    if not edges[0] <= hz <= edges[-1]:
        return None
    return height - 1 - min(int(np.searchsorted(edges, hz, side="right")) - 1, height - 1)


def time_columns(start: float, end: float, duration: float, width: int) -> tuple[int, int] | None:
    """The first and last image columns that show [start, end) seconds, or None when off the image."""
    first = int(np.floor(start / duration * width))
    last = int(np.ceil(end / duration * width)) - 1
    if last < 0 or first >= width or end <= start:
        return None
    return max(first, 0), min(max(last, first), width - 1)


def spectrogram_image(
    audio: np.ndarray,
    sample_rate: int,
    height: int = 256,
    width: int = 1024,
    db_range: float = 80.0,
    regions: Sequence[tuple[float, float]] = (),
    cutoff_hz: float | None = None,
    log_frequency: bool = False,
    top_db: float | None = None,
) -> np.ndarray:
    """An RGB spectrogram: dB from ``top_db`` (default: its loudest pixel) down ``db_range`` mapped to the
    colormap, time regions marked by a cyan bar on top and edge lines, the cutoff by a dashed green line."""
    if db_range <= 0 or height < 2 or width < 1:
        raise ValueError(
            f"a spectrogram needs db_range > 0, height >= 2 and width >= 1, got {db_range}, {height}, {width}"
        )
    db = spectrogram_db(audio, sample_rate, height, width, log_frequency=log_frequency)
    rgb = colormap((db - ((db.max() if top_db is None else top_db) - db_range)) / db_range)
    duration = _mono(audio).size / sample_rate
    for start, end in regions:
        _mark_region(rgb, time_columns(start, end, duration, width))
    if cutoff_hz is not None:
        _mark_frequency(rgb, frequency_row(cutoff_hz, sample_rate, height, log_frequency))
    return rgb


def plot_comparison(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray, int]],
    regions: Sequence[tuple[float, float]] = (),
    cutoff_hz: float | None = None,
    height: int = 200,
    width: int = 1024,
    db_range: float = 80.0,
    log_frequency: bool = False,
    response: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Write stacked (title, audio, sample_rate) spectrograms on one shared dB scale as a PNG, each under a
    title strip, with the same regions and cutoff marked on all, and a filter's ``response`` (Hz, dB)
    drawn as a curve over the right edge of the first panel (0 dB at the edge, RESPONSE_DB at its
    left); returns the image."""
    if not panels:
        raise ValueError("nothing to plot: give at least one (title, audio, sample_rate) panel")
    top = max(_loudest_db(audio, rate, height, width, log_frequency) for _, audio, rate in panels)
    pieces = []
    for index, (title, audio, rate) in enumerate(panels):
        image = spectrogram_image(
            audio, rate, height, width, db_range, regions, cutoff_hz, log_frequency, top
        )
        if response is not None and index == 0:
            _draw_response(image, *response, rate, log_frequency)
        pieces += [_gap(PANEL_GAP_ROWS, width)] if index else []
        pieces += [_title_strip(_caption(title, audio, rate, log_frequency), width), image]
    rgb = np.concatenate(pieces, axis=0)
    write_png(path, rgb)
    return rgb


def draw_text(
    rgb: np.ndarray, text: str, x: int, y: int, scale: int = TEXT_SCALE, colour: tuple = TEXT_COLOUR
) -> None:
    """Draw ``text`` (upper-cased; unknown characters as '?') into ``rgb`` in place, clipped at its edges."""
    for index, char in enumerate(text.upper()):
        glyph = np.kron(FONT.get(char, FONT["?"]), np.ones((scale, scale), bool))
        left = x + index * 4 * scale
        cell = rgb[y : y + glyph.shape[0], left : left + glyph.shape[1]]
        cell[glyph[: cell.shape[0], : cell.shape[1]]] = colour


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC-32 of type + data."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _loudest_db(audio: np.ndarray, sample_rate: int, height: int, width: int, log_frequency: bool) -> float:
    """The loudest pixel of the spectrogram in dB."""
    return float(spectrogram_db(audio, sample_rate, height, width, log_frequency=log_frequency).max())


def _mono(audio: np.ndarray) -> np.ndarray:
    """Float64 mono audio: channels of (frames, channels) averaged."""
    frames = np.asarray(audio, dtype=np.float64)
    mono = frames.mean(axis=1) if frames.ndim == 2 else frames
    if mono.ndim != 1 or mono.size < 16:
        raise ValueError(
            f"audio to plot must be (frames,) or (frames, channels) with >= 16 frames, got {frames.shape}"
        )
    return mono


def _row_edges(height: int, sample_rate: int, log_frequency: bool, min_hz: float) -> np.ndarray:
    """height + 1 frequency edges in Hz, lowest row first."""
    nyquist, fractions = sample_rate / 2, np.linspace(0.0, 1.0, height + 1)
    if log_frequency:
        return min_hz * (nyquist / min_hz) ** fractions
    return fractions * nyquist


def _mark_region(rgb: np.ndarray, columns: tuple[int, int] | None) -> None:
    """A bar along the top and lines at both edges of the region's columns."""
    if columns is not None:
        first, last = columns
        rgb[:REGION_BAR_ROWS, first : last + 1] = REGION_COLOUR
        rgb[:, [first, last]] = REGION_COLOUR


def _mark_frequency(rgb: np.ndarray, row: int | None) -> None:
    """A dashed horizontal line (6 pixels on, 4 off) along ``row``."""
    if row is not None:
        dashes = (np.arange(rgb.shape[1]) % 10) < 6
        rgb[row, dashes] = CUTOFF_COLOUR


def _draw_response(
    rgb: np.ndarray, freqs: np.ndarray, db: np.ndarray, sample_rate: int, log_frequency: bool
) -> None:
    """|H(f)| as a curve in the rightmost RESPONSE_WIDTH columns: one point per image row (its frequency),
    at 0 dB on the right edge down to RESPONSE_DB at the strip's left; the 0 dB edge line dashed."""
    height, width = rgb.shape[:2]
    strip = min(RESPONSE_WIDTH, width)
    edges = _row_edges(height, sample_rate, log_frequency, LOG_MIN_HZ)
    centres = ((edges[:-1] + edges[1:]) / 2)[::-1]  # row 0 (top) is the highest frequency
    level = np.interp(centres, freqs, db)
    columns = width - 1 - np.rint(np.clip(level / RESPONSE_DB, 0, 1) * (strip - 1)).astype(np.int64)
    rgb[(np.arange(height) % 6) < 3, width - 1] = RESPONSE_COLOUR
    for row in range(height):
        lo, hi = sorted((columns[row], columns[min(row + 1, height - 1)]))
        rgb[row, lo : hi + 1] = RESPONSE_COLOUR


def _caption(title: str, audio: np.ndarray, sample_rate: int, log_frequency: bool) -> str:
    """Title plus the axes: duration and frequency range."""
    duration = format_time(_mono(audio).size / sample_rate)
    low, scale = (format_frequency(LOG_MIN_HZ), "log") if log_frequency else ("0", "linear")
    return f"{title}  |  {duration}  |  {low}-{format_frequency(sample_rate / 2)} {scale}".strip()


def _title_strip(text: str, width: int) -> np.ndarray:
    """A dark strip with ``text`` in the bitmap font."""
    strip = _gap(5 * TEXT_SCALE + 4, width)
    draw_text(strip, text, 2, 2)
    return strip


def _gap(rows: int, width: int) -> np.ndarray:
    """A background-coloured block of ``rows`` rows."""
    return np.broadcast_to(np.array(BACKGROUND, np.uint8), (rows, width, 3)).copy()
