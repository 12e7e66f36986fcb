"""Hiss: the noise estimate, the operator's spectra, and denoising on the exact Gaussian prior (Wiener)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gaussian_prior import GaussianPrior
from torch import Generator, Tensor

from cqtrestore.diffusion import Denoiser, SamplerOptions, ZeroNetwork
from cqtrestore.guidance import GuidanceOptions, default_guidance
from cqtrestore.noise import Hiss, NoiseEstimate, estimate_noise
from cqtrestore.pipeline import hiss_sampled, restore_average, restore_segments
from cqtrestore.quality import resolve, task_of

SR = 22050


def notes_with_rests(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Decaying tones every 1.5 s with silent stretches between them."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for onset in np.arange(0, seconds, 1.5):
        f0 = 220 * 2 ** (rng.integers(0, 24) / 12)
        env = np.where((t >= onset) & (t < onset + 0.7), np.exp(-(t - onset) * 4), 0.0)
        out += env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return 0.1 * out / np.sqrt(np.mean(out**2))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 20.0)), n)


def test_the_estimate_finds_the_level_and_whiteness_of_hiss_under_music():
    rng = np.random.default_rng(1)
    music = notes_with_rests()
    hiss = 10 ** (-50 / 20) * rng.standard_normal(music.size)
    estimate = estimate_noise(music + hiss, SR)
    assert 20 * math.log10(estimate.rms) == pytest.approx(-50, abs=1.0)
    assert estimate.white and estimate.spread_db < 3
    assert estimate.snr_db == pytest.approx(10 * math.log10(np.mean(music**2) / np.mean(hiss**2)), abs=1.5)
    coloured = pink(music.size, rng)
    coloured *= 10 ** (-50 / 20) / coloured.std()
    estimate = estimate_noise(music + coloured, SR)
    assert not estimate.white and estimate.spread_db > 12  # 1/f power: 10 dB a decade, 100 Hz-10 kHz = 20
    assert 20 * math.log10(estimate.rms) == pytest.approx(-50, abs=1.5)


def test_too_short_an_input_is_refused():
    with pytest.raises(ValueError, match="too short"):
        estimate_noise(np.zeros(1000), SR)


@pytest.mark.parametrize("level", [0.0, 3.0, float("nan")])
def test_a_noise_level_must_be_negative_dbfs(level):
    with pytest.raises(ValueError, match="noise level"):
        Hiss.white(level, SR)


def test_white_hiss_bin_variance_and_start_level_match_the_noise():
    hiss = Hiss.white(-40, 44100)
    length = 4096
    white = torch.randn(2000, length, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn = hiss.noise(white)
    assert float(drawn.std()) == pytest.approx(0.01, rel=0.01)
    measured = torch.fft.rfft(drawn).abs().square().mean(dim=0)
    np.testing.assert_allclose(measured[1:-1], hiss.bin_variance(length, white)[1:-1], rtol=0.15)
    assert hiss.start_sigma(length, white) == pytest.approx(0.01)
    assert hiss.at_rate(SR).start_sigma(length, white) == pytest.approx(0.01 / math.sqrt(2))  # half the band
    assert hiss.scaled(2.0).start_sigma(length, white) == pytest.approx(0.02)
    state, gain = hiss.whiten(drawn, white, torch.full((length // 2 + 1,), 0.003, dtype=torch.float64))
    assert torch.equal(state, drawn) and bool((gain == 1).all())  # white: y is already the state at σₙ


COLOURED = NoiseEstimate(np.array([0.0, 1000.0, 11025.0]), np.array([4e-8, 4e-8, 1e-9]), SR, math.nan)


def test_whitening_makes_coloured_hiss_white_at_its_level_at_2_khz():
    hiss = Hiss(COLOURED, SR)  # 16 dB quieter at the top than below 1 kHz
    length = 2048
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(3000, length, generator=generator, dtype=torch.float64)
    other = torch.randn(3000, length, generator=generator, dtype=torch.float64)
    sigma = hiss.start_sigma(length, white)
    assert sigma**2 == pytest.approx(float(np.interp(2000.0, COLOURED.freqs, COLOURED.density)) * SR / 2)
    zero_power = torch.zeros(length // 2 + 1, dtype=torch.float64)  # P = 0: plain whitening
    state, gain = hiss.whiten(hiss.noise(white), other, zero_power)
    measured = torch.fft.rfft(state).abs().square().mean(dim=0) / length
    np.testing.assert_allclose(measured[1:-1], sigma**2, rtol=0.1)  # white at σ_w, loud and quiet bands alike
    freqs = np.fft.rfftfreq(length, 1 / SR)
    assert bool((gain[freqs < 1000] < 1).all()) and bool((gain[freqs > 3000] == 1).all())
    assert not hiss.white_noise and default_guidance(hiss).mode == "none"
    coloured = hiss.noise(white)
    residual = hiss.residual(coloured, torch.zeros_like(coloured))  # the hiss whitened by N(f): flat
    flat = torch.fft.rfft(residual[:, :length]).abs().square().mean(dim=0)
    assert float(flat[-200:].mean() / flat[20:200].mean()) == pytest.approx(1.0, rel=0.15)


def test_coloured_hiss_on_a_stationary_gaussian_prior_gives_its_posterior_mean_where_it_is_loud():
    """With the exact denoiser of a stationary Gaussian prior (a spectral Denoiser around F = 0) and one
    step from σ_w, the bands where the hiss is louder than σ_w come out as the Wiener posterior mean
    P/(P + N)·y: the whitening's scaling is exact there; the quieter bands got fresh noise added."""
    length = 4096
    spectrum = 0.003 / (1 + torch.linspace(0, SR / 2, 257, dtype=torch.float64) / 300)
    denoiser = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=0)
    hiss = Hiss(COLOURED, SR)
    generator = torch.Generator().manual_seed(1)
    y = torch.randn(2, length, generator=generator, dtype=torch.float64) * 0.05
    sampler = SamplerOptions(steps=1, s_churn=0.0, solver="dpmpp2m")
    out = restore_segments(denoiser, hiss, y, GuidanceOptions("none"), sampler, generator)
    power = denoiser.power(length, y)[0]
    noise = hiss.bin_variance(length, y) / length
    louder = noise > hiss.start_sigma(length, y) ** 2 * (1 + 1e-6)
    wiener = torch.fft.rfft(y) * power / (power + noise)
    assert int(louder.sum()) > 100
    torch.testing.assert_close(torch.fft.rfft(out)[:, louder], wiener[:, louder], rtol=1e-6, atol=1e-9)


def _white_hiss_on_a_draw(prior: GaussianPrior, sigma_n: float, seed: int) -> tuple[Hiss, Tensor, Generator]:
    """White hiss of std σₙ (as its operator), y = x + σₙ·n for one draw x of the Gaussian prior, and the
    generator that drew them (to draw on)."""
    generator = torch.Generator().manual_seed(seed)
    x = prior.draw(1, generator)
    hiss = Hiss(Hiss.white(20 * math.log10(sigma_n), SR).estimate, SR)
    return hiss, x + sigma_n * torch.randn(x.shape, generator=generator, dtype=torch.float64), generator


def test_white_hiss_on_the_exact_gaussian_prior_gives_the_wiener_posterior():
    """Sampling starts from y itself at σₙ (the first evaluation is the Wiener posterior mean
    C(C + σₙ²I)⁻¹y), and ancestral sampling from there draws the posterior: the samples' mean is the
    Wiener estimate and their spread the posterior's."""
    prior, sigma_n = GaussianPrior(64), 0.03
    hiss, y, generator = _white_hiss_on_a_draw(prior, sigma_n, seed=0)
    wiener = prior.cov @ torch.linalg.solve(prior.cov + sigma_n**2 * torch.eye(64, dtype=torch.float64), y[0])
    calls = []

    def recording(x_t, sigma):
        calls.append((x_t.clone(), torch.as_tensor(sigma).clone()))
        return prior.denoiser(x_t, sigma)

    plan = resolve("balanced", hiss)
    assert plan.warm_start and plan.guidance.mode == "none" and task_of(hiss) == "denoise"
    restore_segments(recording, hiss, y, plan.guidance, plan.sampler, generator)
    first_x, first_sigma = calls[0]
    assert float(first_sigma.max()) == pytest.approx(sigma_n) and torch.equal(first_x, y)
    torch.testing.assert_close(prior.denoiser(first_x, first_sigma)[0], wiener)
    batch = y.expand(4000, -1).clone()
    sampler = SamplerOptions(steps=200, solver="ancestral")
    samples = restore_segments(prior.denoiser, hiss, batch, GuidanceOptions("none"), sampler, generator)
    posterior_var = torch.diag(prior.cov - prior.cov @ torch.linalg.solve(
        prior.cov + sigma_n**2 * torch.eye(64, dtype=torch.float64), prior.cov))  # fmt: skip
    bias = (samples.mean(dim=0) - wiener) / posterior_var.sqrt()
    assert float(bias.abs().max()) < 0.1
    ratio = samples.var(dim=0) / posterior_var
    assert 0.7 < float(ratio.mean()) < 1.3


def test_hiss_below_the_finest_step_leaves_y_alone():
    hiss = Hiss.white(-140, SR)
    y = torch.randn(1, 256, dtype=torch.float64)
    out = restore_segments(lambda x, s: 0 * x, hiss, y, GuidanceOptions("none"), SamplerOptions())
    assert torch.equal(out, y)
    # nor does the second stage run (its STFT round trip alone would move y), and the report says so
    out = restore_average(lambda x, s: 0 * x, hiss, y, GuidanceOptions("none"), SamplerOptions(), draws=2)
    assert torch.equal(out, y) and hiss.refines
    assert not hiss_sampled(hiss, SamplerOptions()) and hiss_sampled(Hiss.white(-60, SR), SamplerOptions())


def test_a_chain_ending_in_hiss_weights_its_misfit_and_stops_guidance_at_the_noise_level():
    from cqtrestore.operators import Compose, LowPass

    coloured = NoiseEstimate(np.array([0.0, 1000.0, 11025.0]), np.array([4e-8, 4e-8, 1e-9]), SR, math.nan)
    hiss, lowpass = Hiss(coloured, SR), LowPass(3000, SR)
    chain = Compose(lowpass, hiss)
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randn(2, 1024, generator=generator, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(chain.residual(y, x), hiss.residual(y, lowpass(x)))
    assert task_of(chain) == "composite" and default_guidance(chain).mode == "rg"
    calls = []

    def recording(x_t, sigma):
        calls.append((float(torch.as_tensor(sigma).max()), torch.is_grad_enabled()))
        return 0.5 * x_t

    sampler = SamplerOptions(steps=8, s_churn=0.0, solver="dpmpp2m")
    restore_segments(recording, chain, y.float(), GuidanceOptions("rg"), sampler, generator)
    floor = hiss.start_sigma(1024, y)
    assert any(s < floor for s, _ in calls) and any(s >= floor for s, _ in calls)
    assert all(grad == (s >= floor) for s, grad in calls)  # RG above the noise's level, the prior below


def test_a_chord_held_all_along_does_not_raise_the_low_bands_of_the_estimate():
    # Minimum statistics alone read a held chord's dense low partials as noise (many dB too loud below
    # 2 kHz); the floor line, which the free high bins fix, caps them.
    rng = np.random.default_rng(2)
    t = np.arange(6 * SR) / SR
    chord = sum(
        np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k**1.5
        for f0 in (65.4, 82.4, 98.0, 130.8, 164.8, 196.0, 261.6, 329.6)
        for k in range(1, 16)
        if k * f0 < 2500
    )
    chord *= 0.1 / np.sqrt(np.mean(chord**2))
    for kind, shape in (("white", None), ("pink", pink)):
        hiss = rng.standard_normal(t.size) if shape is None else shape(t.size, rng)
        hiss *= 10 ** (-50 / 20) / hiss.std()
        estimate, truth = estimate_noise(chord + hiss, SR), estimate_noise(hiss, SR)
        for low, high in ((100, 500), (500, 2000), (4000, 10000)):
            band = (estimate.freqs >= low) & (estimate.freqs < high)
            error = 10 * np.log10(estimate.density[band].mean() / truth.density[band].mean())
            assert abs(error) < 2.0, (kind, low, high, error)


def test_the_prior_spectrum_is_found_through_wrappers():
    from cqtrestore.pipeline import data_power
    from cqtrestore.serve_jobs import _Interruptible

    spectrum = 0.003 / (1 + torch.linspace(0, SR / 2, 257, dtype=torch.float64) / 300)
    denoiser = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=0)
    like = torch.zeros(1, 1024, dtype=torch.float64)
    direct = data_power(denoiser, 1024, like)
    torch.testing.assert_close(direct, denoiser.power(1024, like)[0])
    torch.testing.assert_close(data_power(_Interruptible(denoiser, lambda: None), 1024, like), direct)
    assert float(data_power(lambda x, s: x, 1024, like).abs().max()) == 0.0
    scalar = data_power(Denoiser(ZeroNetwork(), sigma_data=0.1), 1024, like)
    torch.testing.assert_close(scalar, torch.full((513,), 0.01, dtype=torch.float64))


def test_averaged_draws_close_in_on_the_posterior_mean_as_one_over_their_count():
    """restore_average: the first draw is restore_segments' own sample, and the mean of K exact posterior
    draws (ancestral sampling on the exact Gaussian prior) scatters around the Wiener mean with 1/K of
    one draw's variance."""
    from cqtrestore.pipeline import restore_average

    prior = GaussianPrior(64)
    hiss, y, _ = _white_hiss_on_a_draw(prior, 0.03, seed=1)
    hiss = Hiss(hiss.estimate, SR, refines=False)  # the draws themselves, without the second stage
    y = y.expand(2000, -1).clone()
    sampler, guidance = SamplerOptions(steps=50, solver="ancestral"), GuidanceOptions("none")

    def run(draws: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return restore_average(prior.denoiser, hiss, y, guidance, sampler, g, draws=draws)

    one = restore_segments(prior.denoiser, hiss, y, guidance, sampler, torch.Generator().manual_seed(5))
    assert torch.equal(run(1, 5), one)
    g = torch.Generator().manual_seed(5)
    first, second = (restore_segments(prior.denoiser, hiss, y, guidance, sampler, g) for _ in range(2))
    torch.testing.assert_close(run(2, 5), (first + second) / 2)
    single, averaged = run(1, 6).var(dim=0).mean(), run(4, 7).var(dim=0).mean()
    assert 0.2 < float(averaged / single) < 0.3  # 1/4


def test_white_hiss_under_an_ode_solver_is_restored_once_however_many_draws_are_asked():
    """From y itself with no noise added, every draw of dpmpp2m (or churn-free heun) is the same: the mean
    of K is the first, computed once; an ancestral sampler's draws still differ and are averaged."""
    from cqtrestore.pipeline import distinct_draws, restore_average

    prior = GaussianPrior(64)
    hiss, y, _ = _white_hiss_on_a_draw(prior, 0.03, seed=2)
    hiss = Hiss(hiss.estimate, SR, refines=False)  # the draws themselves, without the second stage
    calls = []

    def counted(x: Tensor, sigma: Tensor) -> Tensor:
        calls.append(float(sigma))
        return prior.denoiser(x, sigma)

    guidance = GuidanceOptions("none")
    settings = (("dpmpp2m", 0.0, 1), ("heun", 0.0, 1), ("heun", 5.0, 3), ("ancestral", 0.0, 3))
    for solver, churn, expected in settings:
        sampler = SamplerOptions(steps=4, solver=solver, s_churn=churn)
        assert distinct_draws(hiss, sampler, 3) == expected
        calls.clear()
        once = restore_segments(counted, hiss, y, guidance, sampler, torch.Generator().manual_seed(0))
        single = len(calls)
        calls.clear()
        mean = restore_average(counted, hiss, y, guidance, sampler, torch.Generator().manual_seed(0), draws=3)
        assert len(calls) == expected * single, solver
        assert torch.equal(mean, once) == (expected == 1), solver
    # an estimated spectrum is never exactly flat: whitening tops up its quieter bins with fresh noise
    rng = np.random.default_rng(0)
    music = notes_with_rests()
    for noise in (rng.standard_normal(music.size), pink(music.size, rng)):
        estimated = Hiss(estimate_noise(music + 10 ** (-50 / 20) * noise / noise.std(), SR), SR)
        assert distinct_draws(estimated, SamplerOptions(solver="dpmpp2m"), 3) == 3


def _tone(freq: float, length: int, amplitude: float = 0.1, ramp: int = 4096) -> Tensor:
    """A sine faded in and out over ``ramp`` samples (no clicks to spread across the bands)."""
    t = torch.arange(length, dtype=torch.float64)
    fade = torch.clamp(torch.minimum(t, length - 1 - t) / ramp, max=1.0)
    return amplitude * (torch.sin(2 * math.pi * freq * t / SR) * torch.sin(fade * math.pi / 2) ** 2)[None]


def _band_energy(x: Tensor, low: float, high: float) -> float:
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR, dtype=torch.float64)
    inside = (freqs >= low) & (freqs < high)
    return float(torch.fft.rfft(x)[..., inside].abs().square().sum())


def test_refine_filters_y_below_its_band_by_the_pilots_wiener_gain_and_keeps_an_exact_pilot_above():
    """An exact pilot (the clean signal) makes the second stage the oracle Wiener filter: the hiss around
    a 500-Hz tone falls by far more than 10 dB below 2 kHz; above, where the residual y − x̂ is the hiss
    alone, the output stays the pilot's (its 5-kHz tone kept, almost none of the hiss let through)."""
    length = 2**15
    hiss = Hiss.white(-40, SR)  # σₙ = 0.01
    clean = _tone(500.0, length) + _tone(5000.0, length, 0.05)
    noise = 0.01 * torch.randn(1, length, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = clean + noise
    out = hiss.refine(y, clean)
    assert _band_energy(out - clean, 20, 1900) < 0.05 * _band_energy(y - clean, 20, 1900)
    assert _band_energy(out - clean, 2100, SR / 2) < 0.01 * _band_energy(noise, 2100, SR / 2)
    silent = hiss.refine(y, torch.zeros_like(y))  # the pilot says nothing is there: nothing is, below
    assert _band_energy(silent, 20, 1900) < 1e-6 * _band_energy(y, 20, 1900)
    assert torch.equal(Hiss(hiss.estimate, SR, refines=False).refine(y, clean), clean)


def test_refine_takes_back_above_its_band_what_y_holds_beyond_the_hiss_and_the_pilot_missed():
    """A pilot that dulled the highs (a bright piano's 5-kHz partial left out) or made one up (a 7-kHz tone y
    never had): the residual far above the hiss puts y's partial back and takes the made-up one out; a
    pilot quieter than the hiss where y is hiss alone is not filled with it."""
    length = 2**15
    hiss = Hiss.white(-40, SR)
    partial, phantom = _tone(5000.0, length, 0.05), _tone(7000.0, length, 0.05)
    clean = _tone(500.0, length) + partial
    noise = 0.01 * torch.randn(1, length, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = clean + noise
    pilot = _tone(500.0, length) + phantom
    out = hiss.refine(y, pilot)
    assert _band_energy(out - clean, 4800, 5200) < 0.02 * _band_energy(partial, 4800, 5200)
    assert _band_energy(out - clean, 6800, 7200) < 0.02 * _band_energy(phantom, 6800, 7200)
    assert _band_energy(out - clean, 8000, SR / 2) < 0.01 * _band_energy(noise, 8000, SR / 2)


def test_refine_keeps_y_below_its_band_where_the_pilot_is_far_above_the_noise():
    length = 2**14
    y = _tone(312.0, length) + _tone(1500.0, length, 0.03)
    pilot = 0.7 * y + _tone(3000.0, length)  # wrong level below 2 kHz, but far above hiss at -120 dBFS
    out = Hiss.white(-120, SR).refine(y, pilot)
    assert _band_energy(out - y, 20, 1900) < 1e-9 * _band_energy(y, 20, 1900)


def test_restore_average_refines_the_mean_of_its_draws_for_hiss_only():
    prior, sigma_n = GaussianPrior(1024), 0.03
    hiss, y, _ = _white_hiss_on_a_draw(prior, sigma_n, seed=4)
    sampler = SamplerOptions(steps=4, solver="ancestral")
    raw = Hiss(hiss.estimate, SR, refines=False)
    assert not raw.same_as(hiss)

    def run(operator, restore, **extra):
        generator = torch.Generator().manual_seed(9)
        return restore(prior.denoiser, operator, y, GuidanceOptions("none"), sampler, generator, **extra)

    mean = run(raw, restore_average, draws=2)
    torch.testing.assert_close(run(hiss, restore_average, draws=2), hiss.refine(y, mean))
    assert not torch.allclose(hiss.refine(y, mean), mean)
    torch.testing.assert_close(run(hiss, restore_segments), run(raw, restore_segments))  # the sampler alone
