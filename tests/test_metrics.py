"""Metric identities and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cqtrestore.metrics import (
    frame_power,
    log_power_spectrogram,
    lsd,
    lsd_by_band,
    ltas_distance,
    onset_times,
    power_spectrum,
    si_sdr,
    third_octave_ltas,
)


def test_lsd_identities():
    x = torch.randn(2, 22050, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.all(lsd(x, x) == 0)
    # Scaling by a multiplies every power by a², so every log-power difference is 2·log10(a).
    torch.testing.assert_close(lsd(x, 3 * x), torch.full((2,), 2 * math.log10(3), dtype=torch.float64))
    y = torch.randn(2, 22050, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lsd(x, y), lsd(y, x))
    assert torch.all(lsd(x, y) > 0.3)


def test_lsd_band_sees_only_that_band():
    t = torch.arange(22050, dtype=torch.float64) / 22050
    low, high = torch.sin(2 * math.pi * 500 * t)[None], 0.1 * torch.sin(2 * math.pi * 8000 * t)[None]
    assert lsd(low + high, low + high * 1.5, band=(42, 51)).item() < 1e-4  # 500 Hz is bin 46, 8 kHz bin 743
    assert lsd(low + high, low + high * 1.5, band=(600, 1025)).item() > 0.01


def test_lsd_by_band_locates_a_difference_and_adds_up():
    t = torch.arange(22050, dtype=torch.float64) / 22050
    noise = 1e-3 * torch.randn(2, 22050, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.sin(2 * math.pi * 500 * t)[None] + noise
    fade = torch.hann_window(22050, periodic=False, dtype=torch.float64)  # no edge clicks to leak
    y = x + 0.5 * fade * torch.sin(2 * math.pi * 8000 * t)[None]
    edges = [0, 1000, 3000, 6000, 10000, 11025]
    squared, ref_level, est_level = lsd_by_band(x, y, edges, 22050)
    # Only the 6-10 kHz band differs.
    assert squared[3] > 0.3 and squared[0] < 1e-2 and squared[4] < 1e-2
    assert est_level[3] > ref_level[3] + 0.05 and abs(ref_level[1] - est_level[1]) < 1e-3
    # Bin-weighted over bands covering 0 Hz..Nyquist: the mean of all squared log differences.
    hz = torch.linspace(0, 11025, 1025, dtype=torch.float64)
    counts = torch.tensor(
        [
            ((hz >= a) & ((hz < b) if b < 11025 else (hz <= b))).sum()
            for a, b in zip(edges, edges[1:], strict=False)
        ]
    )
    total = (log_power_spectrogram(x) - log_power_spectrogram(y)).pow(2).mean()
    torch.testing.assert_close((squared * counts).sum() / counts.sum(), total)
    assert lsd_by_band(x, x, edges, 22050)[0].abs().max() == 0
    with pytest.raises(ValueError, match="no STFT bin"):
        lsd_by_band(x, y, [0, 1000, 1001], 22050)


def test_si_sdr_known_values_and_scale_invariance():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(3, 10000, dtype=torch.float64, generator=g)
    noise = torch.randn(3, 10000, dtype=torch.float64, generator=g)
    # Make the noise exactly orthogonal to the (zero-mean) reference, at a power ratio of 100 (20 dB).
    ref = ref - ref.mean(-1, keepdim=True)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref
    noise = noise * (ref.pow(2).sum(-1, keepdim=True) / noise.pow(2).sum(-1, keepdim=True) / 100).sqrt()
    est = ref + noise
    torch.testing.assert_close(si_sdr(ref, est), torch.full((3,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(si_sdr(ref, 0.1 * est), si_sdr(ref, est))
    assert torch.all(si_sdr(ref, ref) > 100)


# --- long-term average spectrum in third-octave bands -------------------------------------------

SR = 22050


def _noise(items: int = 8, length: int = 65536, seed: int = 0) -> torch.Tensor:
    return torch.randn(items, length, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _tone(hz: float, amplitude: float, length: int = 65536) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float64) / SR
    return amplitude * torch.sin(2 * math.pi * hz * t + 0.3)


def test_ltas_distance_of_a_signal_with_itself_is_zero():
    _, levels = third_octave_ltas(_noise(2), SR)
    assert ltas_distance(levels, levels) == 0
    assert ltas_distance(levels, levels, level_normalised=True) == 0


def test_power_spectrum_sums_to_the_mean_square():
    x = 0.3 * _noise()
    assert power_spectrum(x).sum().item() == pytest.approx(x.pow(2).mean().item(), rel=0.01)


def test_frame_power_of_white_noise_is_its_variance_in_every_cell_on_average():
    x = 0.3 * _noise(4)
    power = frame_power(x, 512, 256)
    assert power.shape == (4, 257, 1 + (x.shape[-1] - 512) // 256)
    per_bin = power.mean(dim=(0, 2))[1:-1]  # DC and Nyquist are real-valued: twice the scatter
    assert per_bin.mean().item() == pytest.approx(0.09, rel=0.02)
    assert (per_bin / 0.09).log10().abs().max().item() < 0.1  # no bin more than 1 dB off
    # a sinusoid of amplitude a on a bin centre: a²/4 · (Σw)² / Σw² in its bin
    n = torch.arange(4096, dtype=torch.float64)
    tone = frame_power(0.5 * torch.cos(2 * math.pi * 32 * n / 512), 512, 256)
    window = torch.hann_window(512, dtype=torch.float64)
    expected = 0.25 / 4 * window.sum() ** 2 / window.square().sum()
    torch.testing.assert_close(tone[0, 32], torch.full_like(tone[0, 32], expected.item()))
    assert frame_power(x, 512, 256, center=True).shape[-1] == 1 + x.shape[-1] // 256


def test_ltas_of_white_noise_rises_one_db_per_band():
    # Flat power density: a band holds σ²·bandwidth/(sr/2), and bandwidth grows by 2^(1/3) per band.
    centres, levels = third_octave_ltas(_noise(), SR)
    below_nyquist = centres * 2 ** (1 / 6) < SR / 2  # the top band (10 kHz) is cut at 11.025 kHz
    k = torch.arange(int(below_nyquist.sum()), dtype=torch.float64)
    fit = torch.linalg.lstsq(torch.stack([k, torch.ones_like(k)], 1), levels[below_nyquist, None])
    assert fit.solution[0].item() == pytest.approx(10 * math.log10(2 ** (1 / 3)), abs=0.05)
    expected = 10 * torch.log10(centres * (2 ** (1 / 6) - 2 ** (-1 / 6)) / (SR / 2))
    wide = below_nyquist & (centres > 450)  # lower bands hold only a few 5.4-Hz bins
    torch.testing.assert_close(levels[wide], expected[wide], atol=0.35, rtol=0)


def test_ltas_scaling_by_two_adds_six_db_to_every_band():
    x = _noise(2)
    _, levels = third_octave_ltas(x, SR)
    _, louder = third_octave_ltas(2 * x, SR)
    torch.testing.assert_close(louder - levels, torch.full_like(levels, 20 * math.log10(2)))
    assert ltas_distance(louder, levels) == pytest.approx(20 * math.log10(2))
    assert ltas_distance(louder, levels, level_normalised=True) == pytest.approx(0, abs=1e-9)


def test_ltas_of_a_sinusoid_is_its_power_in_its_band():
    centres, levels = third_octave_ltas(_tone(1000, 0.5), SR)
    band = int(torch.argmin((centres - 1000).abs()))
    assert levels[band].item() == pytest.approx(10 * math.log10(0.5**2 / 2), abs=0.05)  # −9.03 dB
    assert torch.all(torch.cat([levels[:band], levels[band + 1 :]]) < levels[band] - 60)


def test_ltas_bands_outside_low_high_are_excluded():
    centres, _ = third_octave_ltas(_noise(1), SR)
    assert len(centres) == 21  # nominal 100 Hz ... 10 kHz
    assert centres[0].item() == pytest.approx(99.21, abs=0.01)
    assert centres[-1].item() == pytest.approx(10079.37, abs=0.01)
    noise, hum = 0.1 * _noise(1)[0], _tone(100, 0.1)
    high_only = [third_octave_ltas(x, SR, low=200)[1] for x in (noise, noise + hum)]
    torch.testing.assert_close(high_only[1], high_only[0], atol=0.01, rtol=0)
    all_bands = [third_octave_ltas(x, SR)[1] for x in (noise, noise + hum)]
    assert all_bands[1][0] > all_bands[0][0] + 20


def test_ltas_rejects_short_items_and_bands_past_nyquist():
    with pytest.raises(ValueError, match="4096"):
        third_octave_ltas(torch.zeros(1, 1000), SR)
    with pytest.raises(ValueError, match="Nyquist"):
        third_octave_ltas(torch.zeros(1, 8192), SR, high=12000)


def _notes(onsets: list[float], seconds: float, rate: int = 22050, seed: int = 0) -> torch.Tensor:
    """Decaying harmonic tones starting at ``onsets`` (random pitches), a little noise under them."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    x = 1e-3 * rng.standard_normal(t.size)
    for onset in onsets:
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        envelope = np.where(t >= onset, np.exp(-(t - onset) * 4), 0.0)
        x += sum(envelope * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8) if k * f0 < rate / 2)
    return torch.from_numpy(0.05 * x / np.sqrt(np.mean(x**2)))


def test_onsets_of_notes_are_found_where_they_start():
    onsets = [0.2, 0.55, 0.9, 1.4, 1.6, 2.3, 2.65, 3.5]
    found = onset_times(_notes(onsets, 4.0), 22050)
    assert len(found) == len(onsets)
    assert np.max(np.abs(np.array(found) - onsets)) < 0.03  # within a frame or two of 11.6 ms


def test_stationary_noise_and_silence_have_no_onsets_and_level_does_not_matter():
    generator = torch.Generator().manual_seed(3)
    noise = [len(onset_times(torch.randn(3 * 22050, generator=generator), 22050)) for _ in range(10)]
    assert sum(noise) <= 1  # 30 s of white noise: at most one false onset
    assert onset_times(torch.zeros(22050), 22050) == []
    assert onset_times(torch.ones(500), 22050) == []  # shorter than two frames
    notes = _notes([0.3, 1.1, 1.9], 3.0)
    assert onset_times(notes, 22050) == onset_times(100 * notes, 22050)


def test_high_band_error_by_loudness_is_zero_for_the_reference_and_the_gain_for_a_scaled_copy():
    from cqtrestore.metrics import high_band_error_by_loudness

    x = torch.randn(2, 22050, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert high_band_error_by_loudness(x, x, 22050) == pytest.approx((0.0, 0.0), abs=1e-9)
    quiet, loud = high_band_error_by_loudness(x, 0.5 * x, 22050)
    assert quiet == pytest.approx(-6.02, abs=0.01) and loud == pytest.approx(-6.02, abs=0.01)


def test_high_band_error_by_loudness_sees_highs_that_do_not_decay():
    from cqtrestore.metrics import high_band_error_by_loudness

    rate, generator = 22050, torch.Generator().manual_seed(1)
    t = torch.arange(2 * rate, dtype=torch.float64) / rate
    envelope = torch.exp(-3 * t)  # a note decaying by 52 dB over 2 s
    note = envelope * torch.randn(2 * rate, generator=generator, dtype=torch.float64)
    steady = 0.03 * torch.randn(2 * rate, generator=generator, dtype=torch.float64)  # highs that stay
    quiet, loud = high_band_error_by_loudness(note[None], (note + steady)[None], rate)
    assert quiet > 10 and 0 <= loud < 1  # the decay's tail is far too bright, its attack barely
    quiet, loud = high_band_error_by_loudness((note + steady)[None], note[None], rate)
    assert quiet < -10  # and the other way round, darker
