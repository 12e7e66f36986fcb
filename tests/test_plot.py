"""PNG writer, colormap and spectrogram plots, checked by parsing the PNG back."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cqtrestore.plot import (
    COLORMAP_ANCHORS,
    CUTOFF_COLOUR,
    REGION_COLOUR,
    colormap,
    draw_text,
    frequency_row,
    plot_comparison,
    spectrogram_db,
    spectrogram_image,
    time_columns,
    write_png,
)

SR = 22050


def read_png(path) -> np.ndarray:
    """Parse an 8-bit RGB, unfiltered PNG: signature, chunk CRCs, IHDR fields, then the pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        chunks.append((kind, payload))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"] and chunks[2][1] == b""
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(rows[:, 0] == 0)  # filter type None on every scanline
    return rows[:, 1:].reshape(height, width, 3)


@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))))
@settings(max_examples=30, deadline=None)
def test_png_round_trip(tmp_path_factory, image):
    path = tmp_path_factory.mktemp("png") / "image.png"
    write_png(path, image)
    np.testing.assert_array_equal(read_png(path), image)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_png_rejects_other_arrays(tmp_path, bad):
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "bad.png", bad)


def test_colormap_ramp():
    np.testing.assert_array_equal(colormap(np.array([0.0, 1.0])), COLORMAP_ANCHORS[[0, -1]].astype(np.uint8))
    np.testing.assert_array_equal(
        colormap(np.array([-3.0, np.nan, 7.0])), colormap(np.array([0.0, 0.0, 1.0]))
    )
    rgb = colormap(np.linspace(0, 1, 256)).astype(float)
    luminance = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) > -0.6)  # monotone up to rounding
    assert luminance[-1] - luminance[0] > 240
    assert colormap(np.zeros((2, 5))).shape == (2, 5, 3)


def tone(hz: float, seconds: float = 2.0, sample_rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return np.sin(2 * np.pi * hz * t) + 1e-3 * np.random.default_rng(0).standard_normal(t.size)


@pytest.mark.parametrize("log_frequency", [False, True])
@pytest.mark.parametrize("hz", [200.0, 1000.0, 4321.0, 9000.0])
def test_a_tone_is_the_brightest_row_at_its_frequency(hz, log_frequency):
    image = spectrogram_image(tone(hz), SR, height=128, width=200, log_frequency=log_frequency)
    assert image.shape == (128, 200, 3) and image.dtype == np.uint8
    brightest = int(np.argmax(image.astype(float).sum(axis=(1, 2))))
    assert abs(brightest - frequency_row(hz, SR, 128, log_frequency)) <= 1


def test_frequency_axis_ends():
    assert frequency_row(0.0, SR, 100) == 99 and frequency_row(SR / 2, SR, 100) == 0
    assert frequency_row(SR / 4, SR, 100) == 49
    assert frequency_row(SR, SR, 100) is None and frequency_row(10.0, SR, 100, log_frequency=True) is None
    assert frequency_row(30.0, SR, 100, log_frequency=True) == 99


def test_time_columns():
    assert time_columns(1.0, 1.5, 4.0, 400) == (100, 149)
    assert time_columns(-1.0, 0.01, 4.0, 400) == (0, 0)
    assert time_columns(3.999, 9.0, 4.0, 400) == (399, 399)
    assert time_columns(5.0, 6.0, 4.0, 400) is None and time_columns(2.0, 2.0, 4.0, 400) is None


def test_marked_region_changes_exactly_its_columns():
    audio = tone(1000.0, seconds=4.0)
    plain = spectrogram_image(audio, SR, height=64, width=400)
    marked = spectrogram_image(audio, SR, height=64, width=400, regions=[(1.0, 1.5)])
    changed = np.flatnonzero(np.any(plain != marked, axis=(0, 2)))
    assert changed[0] == 100 and changed[-1] == 149 and changed.size == 50
    assert np.all(marked[:, [100, 149]] == REGION_COLOUR)


def test_cutoff_line_is_drawn_at_its_row_only():
    audio = tone(500.0)
    plain = spectrogram_image(audio, SR, height=64, width=100)
    marked = spectrogram_image(audio, SR, height=64, width=100, cutoff_hz=3000.0)
    rows = np.flatnonzero(np.any(plain != marked, axis=(1, 2)))
    assert rows.tolist() == [frequency_row(3000.0, SR, 64)]
    assert np.sum(np.all(marked[rows[0]] == CUTOFF_COLOUR, axis=-1)) == 60  # 6 on, 4 off
    unchanged = spectrogram_image(audio, SR, height=64, width=100, cutoff_hz=SR)  # above Nyquist
    np.testing.assert_array_equal(unchanged, plain)


def test_spectrogram_handles_stereo_short_and_long_audio():
    stereo = np.stack([tone(1000.0), tone(1000.0)], axis=1)
    np.testing.assert_allclose(spectrogram_db(stereo, SR, 32, 50), spectrogram_db(tone(1000.0), SR, 32, 50))
    assert spectrogram_db(tone(1000.0, seconds=0.01), SR, 32, 50).shape == (32, 50)
    long = spectrogram_db(np.random.default_rng(0).standard_normal(60 * SR), SR, 32, 64)
    assert long.shape == (32, 64) and np.all(np.isfinite(long))
    with pytest.raises(ValueError, match="16 frames"):
        spectrogram_db(np.zeros(8), SR)


def test_plot_comparison_writes_panels_on_one_scale(tmp_path):
    loud = tone(1000.0)
    quiet = 0.01 * loud  # 40 dB down
    path = tmp_path / "comparison.png"
    image = plot_comparison(
        path,
        [("input", loud, SR), ("output", quiet, SR)],
        regions=[(0.5, 1.0)],
        cutoff_hz=4000.0,
        height=80,
        width=120,
    )
    np.testing.assert_array_equal(read_png(path), image)
    title_rows, gap_rows = 14, 4
    assert image.shape == (2 * (title_rows + 80) + gap_rows, 120, 3)
    top_panel = image[title_rows : title_rows + 80].astype(float)
    bottom_panel = image[-80:].astype(float)
    row = frequency_row(1000.0, SR, 80)
    assert top_panel[row].mean() > bottom_panel[row].mean() + 50  # the quiet copy is darker
    assert np.any(image[:title_rows] != image[0, -1])  # the title was drawn
    with pytest.raises(ValueError, match="panel"):
        plot_comparison(path, [])


def test_draw_text_stays_in_its_box():
    canvas = np.zeros((20, 40, 3), np.uint8)
    draw_text(canvas, "Ab1?", 2, 3, scale=2, colour=(255, 0, 0))
    rows, columns = np.nonzero(canvas[..., 0])
    assert rows.min() >= 3 and rows.max() < 3 + 10 and columns.min() >= 2 and columns.max() < 2 + 4 * 8
    draw_text(canvas, "WIDE TEXT PAST THE EDGE", 30, 15)  # clipped, no error


def test_a_filter_response_is_drawn_as_a_curve_at_the_right_of_the_first_panel(tmp_path):
    freqs = np.linspace(0, SR / 2, 512)
    db = np.where(freqs < 3000, 0.0, -60.0)  # a brick wall at 3 kHz: 0 dB below, -60 dB (strip's left) above
    silent = np.zeros(SR)
    image = plot_comparison(
        tmp_path / "r.png", [("in", silent, SR), ("out", silent, SR)], response=(freqs, db)
    )
    title_rows, height, width = 14, 200, 1024
    first, second = image[title_rows : title_rows + height], image[-height:]
    white = np.all(first == (255, 255, 255), axis=-1)
    low, high = frequency_row(1000.0, SR, height), frequency_row(8000.0, SR, height)
    assert white[low, width - 1] and not white[low, width - 150 : width - 2].any()
    assert white[high, width - 200] and not white[high, width - 150 : width - 2].any()
    assert not np.all(second == (255, 255, 255), axis=-1).any()  # only on the input's panel


def test_every_character_of_the_plot_labels_has_a_glyph():
    from cqtrestore.plot import FONT

    label = "input; estimated lowpass 1241 Hz, 2 dB/oct (curve) | 5.000 s | 0-11.025 kHz linear"
    assert all(char.upper() in FONT for char in label)
    assert FONT[";"].any() and not np.array_equal(FONT[";"], FONT["?"])
