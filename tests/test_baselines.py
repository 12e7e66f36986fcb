"""Baselines: LPC fills gaps in tonal signals; noise fill extends the spectrum and keeps the passband."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cqtrestore.baselines import lpc_inpaint, noise_fill_bwe
from cqtrestore.metrics import log_power_spectrogram
from cqtrestore.operators import Gap, LowPass

SR = 22050


def test_lpc_fills_a_gap_in_a_sum_of_sinusoids_nearly_exactly():
    t = torch.arange(SR, dtype=torch.float64) / SR
    x = sum(
        a * torch.sin(2 * math.pi * f * t + p) for a, f, p in [(1, 220, 0.3), (0.5, 661, 1), (0.3, 1503, 2)]
    )
    x = x[None]
    gap = Gap([(0.4, 0.45)], SR)  # 50 ms
    filled = lpc_inpaint(gap(x), gap, order=64)
    missing = ~gap.mask(SR, torch.device("cpu"), torch.float64).bool()
    error = (filled - x)[:, missing].pow(2).sum() / x[:, missing].pow(2).sum()
    assert 10 * math.log10(error.item()) < -40  # better than 40 dB SNR inside the gap
    torch.testing.assert_close(filled[:, ~missing], x[:, ~missing])


def test_noise_fill_extends_the_envelope_and_keeps_the_passband():
    g = torch.Generator().manual_seed(0)
    # Pink-ish noise: a 1/f power spectrum, so the log-log envelope is a straight line to extrapolate.
    white = torch.randn(1, 2 * SR, generator=g, dtype=torch.float64)
    freqs = torch.fft.rfftfreq(2 * SR, 1 / SR)
    x = torch.fft.irfft(torch.fft.rfft(white) / freqs.clamp(min=20).sqrt(), n=2 * SR)
    lowpass = LowPass(3000, SR)
    y = lowpass(x)
    out = noise_fill_bwe(y, lowpass, generator=g)
    # The observed band is kept: below the filter's transition band, out and y have the same spectrum.
    passband = torch.fft.rfftfreq(2 * SR, 1 / SR) < 2800
    difference = (
        torch.fft.rfft(out - y)[:, passband].abs().pow(2).sum()
        / torch.fft.rfft(y)[:, passband].abs().pow(2).sum()
    )
    assert difference < 1e-4  # −40 dB; the rest is the FIR projection at the signal edges
    bins = torch.fft.rfftfreq(2048, 1 / SR)
    high = (bins > 4000) & (bins < 10000)
    level = lambda s: log_power_spectrogram(s)[:, high].mean().item()  # noqa: E731
    assert abs(level(out) - level(x)) < 0.25  # within 2.5 dB of the true high band on average
    assert level(y) < level(x) - 5  # while the lowpassed input is far below it


def test_the_wiener_baseline_keeps_a_tone_and_takes_out_most_of_the_hiss():
    from cqtrestore.baselines import wiener_denoise
    from cqtrestore.noise import Hiss

    rate, n = 22050, 22050
    rng = np.random.default_rng(0)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    hiss = 0.01 * rng.standard_normal(n)  # 17 dB SNR
    density = Hiss.white(-40, rate).estimate
    density = np.interp(np.fft.rfftfreq(2048, 1 / rate), density.freqs, density.density)
    out = wiener_denoise(tone + hiss, density, rate)
    before = 10 * np.log10(np.sum(tone**2) / np.sum(hiss**2))
    after = 10 * np.log10(np.sum(tone**2) / np.sum((out - tone) ** 2))
    assert after > before + 10  # a pure tone: nearly every bin is noise only
    silence = wiener_denoise(hiss, density, rate)
    assert np.std(silence) == pytest.approx(0.01 * 0.1, rel=0.3)  # noise alone: down to the -20 dB floor


def test_the_noise_fill_never_raises_the_envelope_above_the_band_it_continues():
    """A loud partial at the top of the fitted octave over silence below it makes a rising line; carried
    over the 3.5 octaves from 1 kHz to Nyquist it blew the output up (RMS 1e4-1e8 times the input's)."""
    rate = 22050
    t = torch.arange(rate, dtype=torch.float64) / rate
    x = torch.sin(2 * math.pi * 850 * t) + 1e-3 * torch.sin(2 * math.pi * 520 * t)
    op = LowPass(1000, rate)
    y = op(x[None])
    out = noise_fill_bwe(y, op, torch.Generator().manual_seed(0))
    assert float(out.std()) < 1.5 * float(y.std())
