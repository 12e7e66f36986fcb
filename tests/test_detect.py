"""Automatic estimates: lowpass cutoff, clipping level and digital-silence dropouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqtrestore.detect import ClipEstimate, CutoffEstimate, detect_clipping, estimate_cutoff, find_dropouts

SR = 22050


def music_like(seconds: float = 2.0, sample_rate: int = SR, seed: int = 0, noise_db: float = -60.0):
    """Six harmonic tones (1/h amplitudes up to Nyquist, random phases) plus white noise, peak 1.

    Built in the frequency domain: fundamentals sit on exact DFT bins, so one inverse FFT makes it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    spectrum = np.zeros(n // 2 + 1, dtype=complex)
    bin_hz = sample_rate / n
    for f0 in rng.uniform(80, 600, size=6):
        step = max(1, int(round(f0 / bin_hz)))
        harmonics = np.arange(step, n // 2, step)
        amplitudes = 1.0 / np.arange(1, harmonics.size + 1)
        spectrum[harmonics] += amplitudes * np.exp(2j * np.pi * rng.uniform(size=harmonics.size))
    tones = np.fft.irfft(spectrum, n)
    tones /= np.abs(tones).max()
    return tones + 10 ** (noise_db / 20) * rng.standard_normal(n)


def windowed_sinc_lowpass(x, cutoff_hz, sample_rate=SR, taps=501, beta=8.0):
    """Kaiser-windowed sinc FIR (unit DC gain) applied with zero delay: -6 dB at the cutoff."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff_hz / sample_rate * np.sinc(2 * cutoff_hz / sample_rate * n) * np.kaiser(taps, beta)
    return np.convolve(x, h / h.sum(), mode="same")


def brick_wall(x, cutoff_hz, sample_rate=SR):
    """Zero every DFT bin above the cutoff."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / sample_rate) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, x.size)


def assert_near(estimate: CutoffEstimate | None, cutoff_hz: float):
    assert estimate is not None, "no cutoff found"
    assert abs(estimate.hz - cutoff_hz) <= max(100.0, 0.05 * cutoff_hz), estimate
    assert estimate.drop_db >= 40 and estimate.floor_db < estimate.passband_db - 40


@pytest.mark.parametrize("cutoff_hz", [1000, 3000, 5000, 8000])
@pytest.mark.parametrize("filter_kind", ["fir", "brick"])
def test_cutoff_of_lowpassed_music(cutoff_hz, filter_kind):
    x = music_like(seed=cutoff_hz)
    y = windowed_sinc_lowpass(x, cutoff_hz) if filter_kind == "fir" else brick_wall(x, cutoff_hz)
    assert_near(estimate_cutoff(y, SR), cutoff_hz)


@pytest.mark.parametrize("cutoff_hz", [1000, 3000, 5000, 8000])
def test_cutoff_at_44k1_with_an_equally_steep_fir(cutoff_hz):
    x = music_like(sample_rate=44100, seed=1)
    assert_near(estimate_cutoff(windowed_sinc_lowpass(x, cutoff_hz, 44100, taps=1001), 44100), cutoff_hz)


def test_cutoff_of_stereo_and_quantised_audio():
    left = windowed_sinc_lowpass(music_like(seed=2), 4000)
    right = windowed_sinc_lowpass(music_like(seed=3), 4000)
    stereo = np.round(0.5 * np.stack([left, right], axis=1) * 32767) / 32767  # 16-bit floor, -96 dB
    assert_near(estimate_cutoff(stereo.astype(np.float32), SR), 4000)


@given(cutoff_hz=st.floats(2500, 9500), seed=st.integers(0, 2**16), noise_db=st.floats(-80, -40))
@settings(max_examples=8, deadline=None, derandomize=True)
def test_cutoff_anywhere_in_the_band(cutoff_hz, seed, noise_db):
    x = music_like(seconds=1.0, seed=seed, noise_db=noise_db)
    assert_near(estimate_cutoff(windowed_sinc_lowpass(x, cutoff_hz), SR), cutoff_hz)


@pytest.mark.parametrize("seed", range(3))
def test_full_band_audio_has_no_cutoff(seed):
    rng = np.random.default_rng(seed)
    assert estimate_cutoff(music_like(seed=seed), SR) is None
    assert estimate_cutoff(music_like(seed=seed, noise_db=-90), 44100) is None
    assert estimate_cutoff(rng.standard_normal((SR, 2)), SR) is None
    assert estimate_cutoff(np.zeros(SR), SR) is None


def test_a_cutoff_right_under_nyquist_is_ignored():
    """Resamplers leave a steep edge near Nyquist; that is no band limitation to restore."""
    y = brick_wall(music_like(), 0.95 * SR / 2)
    assert estimate_cutoff(y, SR) is None
    assert_near(estimate_cutoff(y, SR, max_fraction=1.0), 0.95 * SR / 2)


def test_cutoff_rejects_bad_input():
    with pytest.raises(ValueError, match="too short"):
        estimate_cutoff(np.ones(100), SR)
    with pytest.raises(ValueError, match="NaN"):
        estimate_cutoff(np.full(SR, np.nan), SR)
    with pytest.raises(ValueError, match="shape"):
        estimate_cutoff(np.ones((2, 2, SR)), SR)


def clip_sources(seed: int = 0) -> dict[str, np.ndarray]:
    """Unclipped test signals with an RMS of 0.4 (music, noise) or a peak of 1 (sine)."""
    rng = np.random.default_rng(seed)
    music = music_like(seconds=1.0, seed=seed)
    t = np.arange(SR) / SR
    return {
        "music": 0.4 * music / np.sqrt(np.mean(music**2)),
        "noise": 0.4 * rng.standard_normal(SR),
        "sine": np.sin(2 * np.pi * 440 * t + 0.3),
    }


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.7])
@pytest.mark.parametrize("source", ["music", "noise", "sine"])
@pytest.mark.parametrize("variant", ["plain", "dc offset", "dither", "16 bit"])
def test_clipping_level_found(threshold, source, variant):
    x = clip_sources()[source]
    y = np.clip(x, -threshold, threshold)
    true_fraction = np.mean(np.abs(x) >= threshold)
    if variant == "dc offset":
        y = y + 1e-4
    elif variant == "dither":
        y = y + 1e-4 * np.random.default_rng(1).standard_normal(y.size)
    elif variant == "16 bit":
        y = np.round(y * 32767) / 32767
    estimate = detect_clipping(y)
    assert isinstance(estimate, ClipEstimate)
    assert estimate.threshold == pytest.approx(threshold, abs=2e-4)
    assert estimate.fraction_clipped == pytest.approx(true_fraction, abs=0.01)


def test_asymmetric_clipping_reports_both_levels():
    x = clip_sources()["noise"]
    estimate = detect_clipping(np.clip(x, -0.24, 0.3)[:, None].repeat(2, axis=1))
    assert estimate.positive == pytest.approx(0.3) and estimate.negative == pytest.approx(0.24)
    assert estimate.threshold == pytest.approx(0.24)
    one_sided = detect_clipping(np.minimum(x, 0.3))
    assert one_sided.positive == pytest.approx(0.3) and one_sided.negative is None
    assert one_sided.threshold == pytest.approx(0.3)


@given(threshold=st.floats(0.05, 0.9), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_clipped_noise_level_is_exact(threshold, seed):
    x = 0.4 * np.random.default_rng(seed).standard_normal(8000)
    estimate = detect_clipping(np.clip(x, -threshold, threshold))
    assert estimate is not None and estimate.threshold == pytest.approx(threshold, rel=1e-12)


def test_clean_signals_are_not_clipped():
    rng = np.random.default_rng(3)
    sources = clip_sources()
    t = np.arange(SR) / SR
    clean = [
        *sources.values(),
        sources["music"] + 1e-4 * rng.standard_normal(SR),
        np.round(sources["music"] * 0.3 * 32767) / 32767,
        np.round(np.sin(2 * np.pi * 440 * t) * 127) / 127,  # 8-bit steps must not fake a plateau
        rng.uniform(-1, 1, SR),
        np.stack([sources["sine"], 0.5 * sources["sine"]], axis=1),
        np.zeros(SR),
        np.zeros(0),
    ]
    for signal in clean:
        assert detect_clipping(signal) is None


def test_a_few_samples_at_the_peak_are_not_clipping():
    x = clip_sources()["noise"]
    x[:5] = x.max()  # 5 of 22050 samples: below the 0.1% minimum
    assert detect_clipping(x) is None


def test_dropouts_inside_noise_and_tones():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    for signal in (rng.standard_normal(2 * SR), np.sin(2 * np.pi * 441 * t), np.sin(2 * np.pi * 20 * t)):
        x = signal.copy()
        x[:500] = 0  # leading and trailing silence are not dropouts
        x[-300:] = 0
        x[10000:10441] = 0  # exactly 20 ms
        x[20000:20440] = 1e-9  # 19.95 ms: too short
        x[30000:32205] = 0  # 100 ms
        assert find_dropouts(x, SR) == [(10000 / SR, 10441 / SR), (30000 / SR, 32205 / SR)]
        assert find_dropouts(signal[500:-300], SR) == []  # zero crossings are not dropouts


def test_dropouts_need_silence_on_every_channel():
    x = np.random.default_rng(1).standard_normal((SR, 2))
    x[5000:6000, 0] = 0
    assert find_dropouts(x, SR) == []
    x[5500:7000, 1] = 0
    assert find_dropouts(x, SR, min_duration=0.01) == [(5500 / SR, 6000 / SR)]
    with pytest.raises(ValueError, match="positive"):
        find_dropouts(x, SR, min_duration=0)


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(441, 3000)), min_size=0, max_size=6))
@settings(max_examples=30, deadline=None)
def test_dropouts_found_exactly(layout):
    x = np.random.default_rng(len(layout)).uniform(0.1, 1.0, 100 + sum(a + b for a, b in layout))
    position, expected = 50, []
    for spacing, length in layout:
        position += spacing
        x[position : position + length] = 0
        expected.append((position / SR, (position + length) / SR))
        position += length
    assert find_dropouts(x, SR) == expected
