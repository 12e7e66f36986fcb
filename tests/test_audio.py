"""Tests for cqtrestore.audio: probing, block reads, atomic writes, streaming resampling, windowing."""

from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import resampy
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cqtrestore.audio import (
    DEFAULT_CONTEXT,
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    AtomicAudioWriter,
    AudioError,
    AudioInfo,
    OverlapAdd,
    StreamResampler,
    check_finite,
    fade_starts,
    iter_blocks,
    max_gap_samples,
    output_format,
    peak,
    plan_windows,
    probe,
    read_block,
    window_weights,
)

RNG = np.random.default_rng(1234)


def noise(frames: int, channels: int, scale: float = 0.5) -> np.ndarray:
    """Reproducible float32 test audio of shape (frames, channels), peak about ``scale``."""
    return (np.clip(RNG.standard_normal((frames, channels)), -2, 2) * scale / 2).astype(np.float32)


def write(
    path: Path, data: np.ndarray, rate: int, subtype: str | None = None, fmt: str | None = None
) -> Path:
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    return path


def assert_user_error(error: pytest.ExceptionInfo, *words: str) -> None:
    """One line, names the problem."""
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


# ------------------------------------------------------------------------------------------ probe


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype", "fmt"),
    [
        ("a.wav", 44100, 1, "PCM_16", "WAV"),
        ("b.wav", 48000, 2, "PCM_24", "WAV"),
        ("c.wav", 22050, 2, "FLOAT", "WAV"),
        ("d.flac", 16000, 2, "PCM_16", "FLAC"),
        ("e.ogg", 44100, 1, "VORBIS", "OGG"),
    ],
)
def test_probe_reads_the_header(tmp_path, name, rate, channels, subtype, fmt):
    path = write(tmp_path / name, noise(rate // 2, channels), rate, subtype)
    info = probe(path)
    assert info == AudioInfo(path, rate, channels, rate // 2, fmt, subtype)
    assert info.duration == pytest.approx(0.5)


def test_probe_rejects_what_is_not_usable_audio(tmp_path):
    good = write(tmp_path / "good.wav", noise(1000, 2), 44100, "PCM_16")
    (tmp_path / "text.wav").write_text("hello, this is not audio at all\n" * 10)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[:30])  # the header is cut short
    (tmp_path / "folder.wav").mkdir()
    write(tmp_path / "silent.wav", np.zeros((0, 1)), 22050, "PCM_16")
    cases = {
        "missing.wav": "no such file",
        "folder.wav": "is a folder",
        "empty.wav": "empty file",
        "text.wav": "not an audio file soundfile can read (",
        "cut.wav": "not an audio file soundfile can read (",
        "silent.wav": "no samples",
    }
    for name, words in cases.items():
        with pytest.raises(AudioError) as error:
            probe(tmp_path / name)
        assert_user_error(error, f"{name}: {words}")
        assert isinstance(error.value, ValueError)


def test_probe_says_when_a_file_cannot_be_read(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.wav", noise(100, 1), 8000)
    monkeypatch.setattr(
        os, "access", lambda *args, **kwargs: False
    )  # as if chmod 000 (tests may run as root)
    with pytest.raises(AudioError) as error:
        probe(path)
    assert_user_error(error, "locked.wav: cannot read it (permission denied)")


# ------------------------------------------------------------------------------------------ reading


def test_read_block_pads_with_zeros_outside_the_file(tmp_path):
    data = noise(5000, 2)
    path = write(tmp_path / "x.wav", data, 44100, "FLOAT")
    for start, frames in [(0, 5000), (-300, 1000), (4500, 1000), (-10, 6000), (-500, 200), (7000, 10)]:
        block = read_block(path, start, frames)
        expected = np.zeros((frames, 2), np.float32)
        lo, hi = max(start, 0), min(start + frames, 5000)
        if hi > lo:
            expected[lo - start : hi - start] = data[lo:hi]
        assert block.dtype == np.float32 and block.shape == (frames, 2)
        np.testing.assert_array_equal(block, expected)
    with sf.SoundFile(path) as handle:  # random access on an open file, in any order
        np.testing.assert_array_equal(read_block(handle, 4000, 100), data[4000:4100])
        np.testing.assert_array_equal(read_block(handle, 10, 100), data[10:110])


def test_pcm_files_read_as_float_in_minus_one_to_one(tmp_path):
    data = noise(3000, 1, scale=0.9)
    path = write(tmp_path / "x.flac", data, 48000, "PCM_24")
    np.testing.assert_allclose(read_block(path, 0, 3000), data, atol=2**-22)


def test_non_finite_samples_are_reported_with_their_time(tmp_path):
    data = noise(44100, 2)
    data[33075, 1] = np.nan  # 1.5 s at 22.05 kHz
    data[40000, 0] = np.inf
    path = write(tmp_path / "bad.wav", data, 22050, "FLOAT")
    for call in (
        lambda: read_block(path, 30000, 5000),
        lambda: check_finite(path),
        lambda: list(iter_blocks(path, 1000)),
        lambda: peak(path),
    ):
        with pytest.raises(AudioError) as error:
            call()
        assert_user_error(error, "bad.wav", "1.500 s", "not a number")
    with pytest.raises(AudioError, match="1.814 s"):  # the first bad sample of the block is named
        read_block(path, 34000, 8000)
    assert np.isnan(read_block(path, 33075, 1, check=False)[0, 1])
    check_finite(write(tmp_path / "good.wav", noise(100, 1), 22050, "FLOAT"))


def test_iter_blocks_and_peak_stream_the_whole_file(tmp_path):
    data = noise(10_000, 2)
    data[1234, 0] = 1.75  # a float file above full scale
    path = write(tmp_path / "x.wav", data, 44100, "FLOAT")
    blocks = list(iter_blocks(path, 4096))
    assert [len(b) for b in blocks] == [4096, 4096, 1808]
    np.testing.assert_array_equal(np.concatenate(blocks), data)
    assert peak(path) == pytest.approx(1.75)


# ------------------------------------------------------------------------------------------ writing


def info_of(subtype: str, fmt: str = "WAV") -> AudioInfo:
    return AudioInfo(Path(f"in.{fmt.lower()}"), 44100, 2, 1000, fmt, subtype)


@pytest.mark.parametrize(
    ("subtype", "suffix", "expected"),
    [
        ("PCM_16", ".wav", ("WAV", "PCM_16")),
        ("PCM_24", ".wav", ("WAV", "PCM_24")),
        ("PCM_32", ".wav", ("WAV", "PCM_32")),
        ("FLOAT", ".wav", ("WAV", "FLOAT")),
        ("DOUBLE", ".WAV", ("WAV", "DOUBLE")),
        ("FLOAT", ".flac", ("FLAC", "PCM_24")),
        ("PCM_32", ".flac", ("FLAC", "PCM_24")),
        ("PCM_24", ".flac", ("FLAC", "PCM_24")),
        ("PCM_16", ".flac", ("FLAC", "PCM_16")),
        ("VORBIS", ".wav", ("WAV", "PCM_16")),
        ("VORBIS", ".flac", ("FLAC", "PCM_16")),
        ("PCM_U8", ".wav", ("WAV", "PCM_16")),
        ("PCM_24", ".ogg", ("OGG", "VORBIS")),
        ("FLOAT", ".aiff", ("AIFF", "FLOAT")),
        ("PCM_16", ".aif", ("AIFF", "PCM_16")),
    ],
)
def test_output_format_keeps_the_input_encoding_where_it_can(subtype, suffix, expected):
    assert output_format(info_of(subtype), f"out{suffix}") == expected


def test_output_format_rejects_unknown_suffixes():
    for name in ("out.xyz", "out"):
        with pytest.raises(AudioError) as error:
            output_format(info_of("PCM_16"), name)
        assert_user_error(error, name, "unknown output format", ".flac", ".ogg", ".wav")


def test_writer_renames_into_place_with_the_usual_permissions(tmp_path):
    data = noise(5000, 2)
    path = tmp_path / "sub" / "out.wav"
    with AtomicAudioWriter(path, 48000, 2, "WAV", "PCM_24") as writer:
        writer.write(data[:2000])
        assert not path.exists()  # nothing visible until the block ends
        writer.write(data[2000:])
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    assert probe(path).subtype == "PCM_24" and probe(path).sample_rate == 48000
    np.testing.assert_allclose(sf.read(path, dtype="float32")[0], data, atol=2**-22)
    assert writer.clipped == 0 and writer.frames == 5000


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_writer_leaves_nothing_behind_when_interrupted(tmp_path, error):
    path = tmp_path / "out.flac"
    with pytest.raises(error), AtomicAudioWriter(path, 44100, 1, "FLAC", "PCM_16") as writer:
        writer.write(noise(1000, 1))
        raise error()
    assert list(tmp_path.iterdir()) == []
    old = write(tmp_path / "old.wav", noise(10, 1), 8000)  # an existing output stays as it was
    before = old.read_bytes()
    with pytest.raises(KeyboardInterrupt), AtomicAudioWriter(old, 44100, 1, "WAV", "FLOAT") as writer:
        writer.write(noise(1000, 1))
        raise KeyboardInterrupt
    assert old.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["old.wav"]


def test_writer_clips_and_counts_for_integer_encodings_only(tmp_path):
    data = np.array([[0.5, 1.0], [1.5, -2.0], [-1.0, 0.0]], np.float32)
    with AtomicAudioWriter(tmp_path / "int.wav", 8000, 2, "WAV", "PCM_16") as writer:
        writer.write(data)
    assert writer.clipped == 2
    back = sf.read(tmp_path / "int.wav", dtype="float32")[0]
    assert back[1, 0] == pytest.approx(1.0, abs=1e-4) and back[1, 1] == -1.0  # clipped, not wrapped
    with AtomicAudioWriter(tmp_path / "float.wav", 8000, 2, "WAV", "FLOAT") as writer:
        writer.write(data)
    assert writer.clipped == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "float.wav", dtype="float32")[0], data)
    with (
        pytest.raises(AudioError, match="NaN"),
        AtomicAudioWriter(tmp_path / "n.wav", 8000, 2, "WAV", "FLOAT") as w,
    ):
        w.write(np.full((4, 2), np.nan))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.wav", "int.wav"]


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".aiff", ".mp3"])
def test_every_listed_container_can_be_written(tmp_path, suffix):
    try:
        fmt, subtype = output_format(info_of("PCM_16"), f"out{suffix}")
    except AudioError:
        pytest.skip(f"this libsndfile cannot write {suffix}")
    path = tmp_path / f"out{suffix}"
    with AtomicAudioWriter(path, 44100, 2, fmt, subtype) as writer:
        writer.write(noise(44100, 2, scale=0.3))
    info = probe(path)
    assert (info.format, info.subtype, info.channels) == (fmt, subtype, 2)


# ------------------------------------------------------------------------------------------ resampling

RATES = [(44100, 22050), (48000, 22050), (16000, 22050), (22050, 44100), (22050, 48000), (44101, 22050)]


def stream(resampler: StreamResampler, signal: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed ``signal`` in blocks of the given sizes (cycled) and concatenate every output."""
    outputs, position, index = [], 0, 0
    while position < len(signal):
        size = sizes[index % len(sizes)]
        outputs.append(resampler.process(signal[position : position + size]))
        position, index = position + size, index + 1
    return np.concatenate([*outputs, resampler.flush()])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.sampled_from(RATES),
    frames=st.integers(1, 40_000),
    sizes=st.lists(st.integers(1, 30_000), min_size=1, max_size=4),
    channels=st.integers(1, 2),
)
def test_streaming_matches_resampy_on_the_whole_signal(rates, frames, sizes, channels):
    sr_in, sr_out = rates
    assume(frames * sr_out // sr_in >= 1)  # resampy refuses outputs of length 0
    signal = noise(frames, channels, scale=1.0)
    expected = resampy.resample(signal.astype(np.float64), sr_in, sr_out, axis=0)
    out = stream(StreamResampler(sr_in, sr_out, channels), signal, sizes)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert np.max(np.abs(out - expected)) < 1e-5  # both ends included


def test_equal_rates_pass_samples_through():
    signal = noise(1000, 2)
    out = stream(StreamResampler(22050, 22050, 2), signal, [300])
    np.testing.assert_array_equal(out, signal)


def test_very_short_inputs_give_floor_of_the_ratio():
    for frames, expected in [(1, 0), (2, 1), (3, 1)]:
        resampler = StreamResampler(44100, 22050, 1)
        assert len(stream(resampler, noise(frames, 1), [1])) == expected


def test_resampler_memory_is_bounded_by_the_block_size():
    for sr_in, sr_out in [(44100, 22050), (22050, 48000), (44101, 22050)]:
        resampler = StreamResampler(sr_in, sr_out, 1)
        held = []
        for _ in range(100):
            resampler.process(np.zeros((4096, 1), np.float32))
            held.append(resampler.buffered)
        align = sr_in // math.gcd(sr_in, sr_out)  # input frames per whole output step
        assert max(held) <= 4096 + max(16384, 4 * (250 + align)) + 250 + align  # whatever the length


def test_resampling_memory_does_not_grow_with_length():
    def peak_bytes(blocks: int) -> int:
        resampler = StreamResampler(16000, 22050, 1)
        block = np.zeros((16384, 1), np.float32)
        tracemalloc.start()
        for _ in range(blocks):
            resampler.process(block)
        resampler.flush()
        peak_size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_size

    peak_bytes(2)  # compile resampy's kernel outside the measurement
    assert peak_bytes(60) < 1.2 * peak_bytes(6)


# ------------------------------------------------------------------------------------------ windowing

LAYOUTS = [(64, 8, 10), (256, 40, 30), (999, 100, 250), (DEFAULT_WINDOW, DEFAULT_OVERLAP, DEFAULT_CONTEXT)]


def total_weight(n: int, starts: list[int], window: int, overlap: int) -> np.ndarray:
    total = np.zeros(n)
    for index, start in enumerate(starts):
        lo, hi = max(start, 0), min(start + window, n)
        total[lo:hi] += window_weights(starts, window, overlap, index)[lo - start : hi - start]
    return total


def check_plan(n: int, starts: list[int], window: int, overlap: int, gaps=(), context: int = 0) -> None:
    """Every property plan_windows promises, checked from the starts alone."""
    assert starts[0] <= 0 < starts[0] + window and starts[-1] < n <= starts[-1] + window  # covered
    hops = np.diff(starts)
    assert np.all(hops >= 1) and np.all(hops <= window - overlap)  # neighbours overlap by >= overlap
    np.testing.assert_allclose(total_weight(n, starts, window, overlap), 1.0, rtol=0, atol=1e-12)
    fades = fade_starts(starts, window, overlap)
    for start, stop in gaps:
        assert all(fade + overlap <= start or fade >= stop for fade in fades)  # no fade touches a gap
        owners = [
            k
            for k, s in enumerate(starts)
            if (k == 0 or fades[k - 1] + overlap <= start)  # inside the core ...
            and (k == len(starts) - 1 or stop <= fades[k])
            and s <= start - min(context, start)  # ... with context on both sides
            and stop + min(context, n - stop) <= s + window
        ]
        assert len(owners) == 1


def test_defaults_and_the_gap_limit():
    assert max_gap_samples() == 65536 - 2 * 11025
    assert max_gap_samples(1000, 100, 50) == 800  # the fade is the minimum context
    assert plan_windows(100) == [0]
    assert plan_windows(DEFAULT_WINDOW) == [0]
    starts = plan_windows(22050 * 10)  # 10 s: 4 windows from 0 to n - window, evenly spread
    assert starts == [0, 51655, 103309, 154964]


@settings(max_examples=60, deadline=None)
@given(layout=st.sampled_from(LAYOUTS), n=st.integers(1, 12), fraction=st.floats(0.01, 1))
def test_plain_layout_covers_everything_with_unit_weight(layout, n, fraction):
    window, overlap, _ = layout
    n_samples = max(1, int(n * window * fraction))
    starts = plan_windows(n_samples, window, overlap)
    check_plan(n_samples, starts, window, overlap)
    assert len(starts) == max(1, -(-(n_samples - overlap) // (window - overlap)))  # as few as a grid


@st.composite
def gapped(draw, share: int = 2):
    """A layout, a length and gaps up to 1/share of the limit, at least one fade apart."""
    window, overlap, context = draw(st.sampled_from(LAYOUTS[:3]))
    limit = max_gap_samples(window, overlap, context)
    n = draw(st.integers(window // 2, 12 * window))
    gaps, position = [], draw(st.integers(0, n))
    while len(gaps) < 8:
        length = draw(st.integers(1, max(1, limit // share)))
        if position + length > n:
            break
        gaps.append((position, position + length))
        position += length + draw(st.integers(max(overlap, 1), 3 * window))
    return window, overlap, context, n, gaps


@settings(max_examples=150, deadline=None)
@given(case=gapped())
def test_each_gap_sits_in_one_window_core_with_context(case):
    window, overlap, context, n, gaps = case
    starts = plan_windows(n, window, overlap, gaps, context)
    check_plan(n, starts, window, overlap, gaps, context)


@settings(max_examples=80, deadline=None)
@given(layout=st.sampled_from(LAYOUTS), data=st.data())
def test_one_gap_up_to_the_limit_fits_anywhere(layout, data):
    window, overlap, context = layout
    limit = max_gap_samples(window, overlap, context)
    n = data.draw(st.integers(1, 6 * window))
    length = data.draw(st.integers(1, min(limit, n)))
    start = data.draw(st.sampled_from([0, n - length]) | st.integers(0, n - length))
    starts = plan_windows(n, window, overlap, [(start, start + length)], context)
    check_plan(n, starts, window, overlap, [(start, start + length)], context)


def test_gaps_closer_than_a_fade_share_a_window():
    gaps = [(100_000, 110_000), (110_000 + DEFAULT_OVERLAP - 1, 125_000)]
    starts = plan_windows(300_000, gaps=gaps)
    check_plan(300_000, starts, DEFAULT_WINDOW, DEFAULT_OVERLAP, [(100_000, 125_000)], DEFAULT_CONTEXT)
    with pytest.raises(AudioError) as error:  # ... and then must fit in one window together
        plan_windows(300_000, gaps=[(100_000, 130_000), (130_100, 150_000)])
    assert_user_error(error, "gaps 4.54-6.80 s are less than 0.37 s apart", "at most 1.97 s")


def test_gap_errors_speak_in_seconds():
    with pytest.raises(AudioError) as error:
        plan_windows(22050 * 60, gaps=[(22050 * 10, 22050 * 12)])
    assert_user_error(error, "gap 10.00-12.00 s is 2.00 s long", "at most 1.97 s", "0.50 s of context")
    with pytest.raises(AudioError) as error:
        plan_windows(22050 * 5, gaps=[(22050 * 4, 22050 * 6)])
    assert_user_error(error, "outside the audio (0-5.00 s)")
    # two long gaps too far apart to share a window and too close for separate ones
    with pytest.raises(AudioError) as error:
        plan_windows(22050 * 20, gaps=[(220500, 253575), (289957, 323032)])
    assert_user_error(error, "10.00-11.50 s and the next one", "separate runs")


def test_gaps_that_touch_are_one_gap():
    a = plan_windows(200_000, gaps=[(50_000, 60_000), (60_000, 70_000)])
    assert a == plan_windows(200_000, gaps=[(50_000, 70_000)])


def test_gap_windows_are_centred_on_short_gaps():
    starts = plan_windows(22050 * 30, gaps=[(300_000, 301_000)])
    fades = fade_starts(starts, DEFAULT_WINDOW, DEFAULT_OVERLAP)
    owner = next(k for k, s in enumerate(starts) if s <= 300_000 and 301_000 <= s + DEFAULT_WINDOW)
    assert abs(starts[owner] + DEFAULT_WINDOW // 2 - 300_500) <= 1
    assert fades[owner - 1] + DEFAULT_OVERLAP <= 300_000 < 301_000 <= fades[owner]


# ------------------------------------------------------------------------------------------ overlap-add


def overlap_add(n: int, starts: list[int], window: int, overlap: int, segments) -> tuple[np.ndarray, int]:
    """Run OverlapAdd over all windows; (concatenated output, largest number of pending samples)."""
    ola = OverlapAdd(n, starts, window, overlap, segments(0).shape[1])
    parts, pending = [], 0
    for index in range(len(starts)):
        parts.append(ola.add(index, segments(index)))
        pending = max(pending, ola.buffered)
    parts.append(ola.finish())
    assert all(p.dtype == np.float32 for p in parts)
    return np.concatenate(parts), pending


@settings(max_examples=40, deadline=None)
@given(case=gapped())
def test_unchanged_windows_rebuild_the_signal(case):
    window, overlap, context, n, gaps = case
    starts = plan_windows(n, window, overlap, gaps, context)
    signal = noise(n, 2)

    def cut(index: int) -> np.ndarray:
        out = np.zeros((window, 2), np.float32)
        lo, hi = max(starts[index], 0), min(starts[index] + window, n)
        out[lo - starts[index] : hi - starts[index]] = signal[lo:hi]
        return out

    out, pending = overlap_add(n, starts, window, overlap, cut)
    assert out.shape == (n, 2)
    np.testing.assert_allclose(out, signal, rtol=0, atol=1e-6)
    assert pending <= window  # about one window in memory


def test_crossfading_zero_into_one_is_monotone_and_smooth():
    n, window, overlap = 5000, 1000, 200
    starts = plan_windows(n, window, overlap, gaps=[(2000, 2100)], context=150)
    out, _ = overlap_add(n, starts, window, overlap, lambda k: np.full((window, 1), k, np.float32))
    steps = np.diff(out[:, 0])
    assert np.all(steps >= 0)  # window k is the constant k: the output rises from 0 to the last index
    assert np.max(steps) <= np.pi / 2 / overlap + 1e-6  # a raised-cosine step, never a jump
    assert out[0, 0] == 0 and out[-1, 0] == len(starts) - 1


def test_overlap_add_checks_its_input():
    starts = plan_windows(3000, 1000, 200)
    ola = OverlapAdd(3000, starts, 1000, 200, 1)
    with pytest.raises(ValueError, match="in order"):
        ola.add(1, np.zeros((1000, 1)))
    with pytest.raises(ValueError, match="shape"):
        ola.add(0, np.zeros((1000, 2)))
    with pytest.raises(ValueError, match="were added"):
        ola.finish()
    with pytest.raises(ValueError, match="cover"):
        OverlapAdd(5000, starts, 1000, 200, 1)
    with pytest.raises(ValueError, match="hop"):
        fade_starts([0, 900], 1000, 200)
    with pytest.raises(ValueError, match="crossfades overlap"):
        fade_starts([0, 100, 200], 1000, 200)
