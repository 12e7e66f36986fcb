"""Blind lowpass (BABE): the filter family, projection and fit, and the joint estimate on a Gaussian prior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cqtrestore.blind import (
    DB_PER_ORDER,
    ESTIMATE_SLOPE_RANGE_DB,
    HISS_FIT_SIGMA_MAX,
    BlindLowPass,
    FilterEstimation,
    noise_weight,
)
from cqtrestore.diffusion import SamplerOptions
from cqtrestore.guidance import GuidanceOptions, default_guidance
from cqtrestore.noise import Hiss
from cqtrestore.operators import Compose
from cqtrestore.pipeline import restore_segments
from cqtrestore.quality import resolve, task_of
from cqtrestore.warmstart import classical_estimate, has_estimate

SR = 22050


class StationaryPrior:
    """x ~ N(0, C), C circulant with power ∝ 1/(1 + f/200 Hz): its exact denoiser is a Wiener filter."""

    def __init__(self, length: int, std: float = 0.057) -> None:
        freqs = torch.fft.rfftfreq(length, 1 / SR, dtype=torch.float64)
        power = 1 / (1 + freqs / 200)
        self.power = power / power.mean() * std**2 * length  # per-bin variance of the unnormalised rfft
        self.length = length

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Samples, shape (batch, length)."""
        white = torch.fft.rfft(torch.randn(batch, self.length, generator=generator, dtype=torch.float64))
        return torch.fft.irfft(white * (self.power / self.length).sqrt(), self.length)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact D(x, σ) = C (C + σ² I)⁻¹ x."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
        gain = self.power / (self.power + sigma**2 * self.length)
        return torch.fft.irfft(torch.fft.rfft(x.double()) * gain, self.length).to(x.dtype)


def tone(hz: float, n: int = 16384) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(n, dtype=torch.float64) / SR)[None]


def middle_rms(x: torch.Tensor) -> float:
    return float(x[..., 4096:-4096].pow(2).mean().sqrt())


def bandpass(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return torch.fft.irfft(torch.fft.rfft(x) * ((freqs >= low) & (freqs < high)), x.shape[-1])


@pytest.mark.parametrize(("cutoff", "slope"), [(1000.0, 12.0), (3000.0, 48.0)])
def test_the_response_is_a_butterworth_magnitude(cutoff, slope):
    op = BlindLowPass(cutoff, SR, slope_db=slope)
    n_fft = 1 << 16
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    response = 20 * np.log10(op.response(n_fft).detach().numpy())
    at = int(round(cutoff / SR * n_fft))
    assert response[at] == pytest.approx(-10 * np.log10(2), abs=0.01)  # -3 dB at the cutoff
    order = slope / DB_PER_ORDER
    np.testing.assert_allclose(response, -10 * np.log10(1 + (freqs / cutoff) ** (2 * order)), atol=1e-9)
    assert -10 * np.log10((1 + 8 ** (2 * order)) / (1 + 4 ** (2 * order))) == pytest.approx(-slope, rel=0.01)
    assert response[freqs < cutoff / 4].min() > -0.02  # flat passband (order 2: -0.017 dB at fc / 4)
    assert op.estimated_response() == pytest.approx((cutoff, slope))


def test_filtering_attenuates_a_tone_by_the_response():
    op = BlindLowPass(2000.0, SR, slope_db=24.0)
    for hz in (500.0, 2000.0, 4000.0):
        expected = (1 + (hz / 2000.0) ** (2 * 24.0 / DB_PER_ORDER)) ** -0.5
        assert middle_rms(op(tone(hz))) / middle_rms(tone(hz)) == pytest.approx(expected, rel=1e-3)


def test_the_projection_takes_y_in_the_passband_and_keeps_the_estimate_where_nothing_passes():
    op = BlindLowPass(2000.0, SR, slope_db=96.0)
    low, high = tone(300.0), tone(8000.0)
    y = op(low + high)  # the high tone is gone (-190 dB)
    x_hat = 0.5 * low + 0.7 * high
    out = op.project(x_hat, y)
    residual = out - (low + 0.7 * high)
    assert middle_rms(residual) < 1e-3 * middle_rms(low)


def steep_lowpassed_noise(cutoff: float, seed: int = 0) -> torch.Tensor:
    """Coloured noise through a steep (96 dB/octave) lowpass, shape (1, 3 s)."""
    x = StationaryPrior(3 * SR).draw(1, torch.Generator().manual_seed(seed))
    return BlindLowPass(cutoff, SR, slope_db=96.0, estimate=False)(x)


def test_the_observed_share_is_one_in_the_passband_and_zero_at_the_floor():
    y = steep_lowpassed_noise(2000.0)
    op = BlindLowPass(2000.0, SR, stopband_hz=2600.0)
    n_fft = op.fit_size(y.shape[-1])
    share = op.observed_share(y, n_fft)[0]
    freqs = torch.fft.rfftfreq(n_fft, 1 / SR)
    assert share[(freqs > 100) & (freqs < 1500)].min() > 0.99
    assert share[freqs > 2600].max() == 0
    assert torch.equal(BlindLowPass(2000.0, SR).observed_share(y, n_fft), torch.ones(n_fft // 2 + 1).double())


def test_after_hiss_the_projection_trusts_a_bin_by_its_power_over_the_hiss_removed():
    """A denoised observation: a loud 300-Hz tone (trusted: y there) and a 4-kHz tone far below the hiss
    that was removed, which a gentle filter would have passed at −12 dB (not trusted: the estimate
    stays, where dividing by |H| would have made it 4x louder)."""
    op = BlindLowPass(2000.0, SR, slope_db=12.0, estimate=False)
    hiss = Hiss.white(-20, SR)
    after = op.after_hiss(hiss)
    fade = torch.hann_window(16384, periodic=False, dtype=torch.float64)  # no edges to leak across bands
    low, high = tone(300.0) * fade, 1e-4 * tone(4000.0) * fade
    y = op(low + high)
    x_hat = 0.5 * low + 0.7 * high
    share = after.observed_share(y, after.fit_size(y.shape[-1]))[0]
    freqs = torch.fft.rfftfreq(after.fit_size(y.shape[-1]), 1 / SR)
    assert share[(freqs > 290) & (freqs < 310)].max() > 0.999 and share[(freqs > 3000)].max() < 0.01
    out = after.project(x_hat, y)
    assert middle_rms(bandpass(out - low, 100, 1000)) < 1e-3 * middle_rms(low)
    assert middle_rms(bandpass(out - x_hat, 3000, 6000)) < 0.02 * middle_rms(bandpass(x_hat, 3000, 6000))
    plain = op.project(x_hat, y)  # the known filter alone corrects the 4-kHz tone toward y / |H|
    assert middle_rms(bandpass(plain - x_hat, 3000, 6000)) > 0.2 * middle_rms(bandpass(x_hat, 3000, 6000))
    assert after.state is op.state and after.same_as(op.after_hiss(hiss)) and not after.same_as(op)


def test_a_filter_estimate_too_open_keeps_the_estimate_at_the_floor_instead_of_cutting_a_hole():
    y = steep_lowpassed_noise(2000.0)
    x_hat = StationaryPrior(3 * SR).draw(1, torch.Generator().manual_seed(1))  # the band the sampler made
    freqs = torch.fft.rfftfreq(y.shape[-1], 1 / SR)
    band = (freqs > 4000) & (freqs < 6000)

    def band_power(x: torch.Tensor) -> float:
        return float(torch.fft.rfft(x[0])[band].abs().square().mean())

    for stopband, kept in ((None, False), (2600.0, True)):
        too_open = BlindLowPass(8000.0, SR, slope_db=24.0, stopband_hz=stopband)  # true cutoff: 2 kHz
        out = too_open.project(x_hat, y)
        ratio = band_power(out) / band_power(x_hat)
        assert (ratio > 0.99) if kept else (ratio < 0.1), (stopband, ratio)
    # below the cutoff the projection still takes y
    exact = BlindLowPass(2000.0, SR, slope_db=96.0, stopband_hz=2600.0).project(x_hat, y)
    low = (freqs > 100) & (freqs < 1500)
    error = torch.fft.rfft(exact[0] - y[0])[low].abs().square().mean()
    assert float(error / torch.fft.rfft(y[0])[low].abs().square().mean()) < 1e-4


def test_the_blind_lowpass_of_a_file_knows_where_the_detector_saw_its_floor():
    from cqtrestore.operators import LowPass
    from cqtrestore.tasks import blind_lowpass

    x = StationaryPrior(3 * SR).draw(1, torch.Generator().manual_seed(0))
    op, found = blind_lowpass(LowPass(2000.0, SR)(x)[0].numpy(), SR)  # the evaluation's Kaiser FIR
    assert found is not None and op.stopband_hz == found.stopband_hz
    assert 2000 < op.stopband_hz < 3000 and op.cutoff_hz == pytest.approx(found.hz)
    assert op.slope_db == pytest.approx(min(found.drop_db / math.log2(found.stopband_hz / found.hz), 240))
    assert op.slope_db > 48  # a cliff: starts steep
    full = StationaryPrior(3 * SR).draw(1, torch.Generator().manual_seed(3))[0].numpy()
    op, found = blind_lowpass(full, SR)
    assert found is None and op.stopband_hz is None and op.cutoff_hz == pytest.approx(4000.0)


def test_an_edge_at_the_floors_first_bin_starts_at_the_steepest_slope(monkeypatch):
    from cqtrestore import detect
    from cqtrestore.tasks import blind_lowpass

    at_floor = detect.CutoffEstimate(
        hz=3000.0, drop_db=60.0, passband_db=-20.0, floor_db=-80.0, stopband_hz=3000.0
    )
    monkeypatch.setattr(detect, "estimate_cutoff", lambda samples, rate: at_floor)
    op, found = blind_lowpass(np.zeros(SR, dtype=np.float32), SR)
    assert found is at_floor and op.slope_db == pytest.approx(ESTIMATE_SLOPE_RANGE_DB[1])
    assert op.stopband_hz == 3000.0


def test_at_rate_shares_the_unknowns():
    op = BlindLowPass(3000.0, 44100)
    view = op.at_rate(SR)
    assert view.sample_rate == SR and view.same_as(op.at_rate(SR)) and view.state is op.state
    with torch.no_grad():
        view.state.log_cutoff.fill_(math.log(2500.0))
    assert op.cutoff_hz == pytest.approx(2500.0)
    assert not BlindLowPass(3000.0, SR).same_as(view)


def test_fit_recovers_the_filter_from_the_clean_signal():
    generator = torch.Generator().manual_seed(0)
    prior = StationaryPrior(16384)
    x = prior.draw(2, generator)
    truth = BlindLowPass(2500.0, SR, slope_db=36.0)
    op = BlindLowPass(4000.0, SR, slope_db=12.0)
    for _ in range(40):
        loss = op.fit(x, truth(x), steps=25)
    assert loss < 1e-4
    cutoff, slope = op.estimated_response()
    assert cutoff == pytest.approx(2500.0, rel=0.02) and slope == pytest.approx(36.0, rel=0.1)
    assert op.state.history[-1][:2] == pytest.approx((cutoff, slope))


def test_the_estimate_stays_at_least_twelve_db_per_octave_steep():
    x = StationaryPrior(16384).draw(2, torch.Generator().manual_seed(0))
    first_order = BlindLowPass(2000.0, SR, slope_db=DB_PER_ORDER, estimate=False)  # 6 dB/octave exists
    op = BlindLowPass(4000.0, SR, slope_db=24.0)
    for _ in range(20):
        op.fit(x, first_order(x), steps=25)
    assert op.slope_db == pytest.approx(ESTIMATE_SLOPE_RANGE_DB[0])
    assert first_order.slope_db == pytest.approx(6.02, abs=0.01)


def hissy(level: float, length: int = 16384) -> Hiss:
    """White hiss of RMS ``level`` (per sample) at SR."""
    return Hiss(Hiss.white(20 * math.log10(level), SR).estimate, SR)


def test_the_noise_weight_drops_the_bins_where_y_is_only_hiss():
    generator = torch.Generator().manual_seed(3)
    prior = StationaryPrior(16384)
    lowpass = BlindLowPass(2000.0, SR, slope_db=96.0)
    n = 0.002 * torch.randn(2, 16384, generator=generator, dtype=torch.float64)
    y = lowpass(prior.draw(2, generator)) + n
    n_fft = lowpass.fit_size(16384)
    weight = noise_weight(y, [hissy(0.002)], n_fft)
    freqs = torch.fft.rfftfreq(n_fft, 1 / SR, dtype=torch.float64)
    assert weight.shape == freqs.shape and float(weight.min()) >= 0 and float(weight.max()) <= 1
    assert float(weight[(freqs > 3000)].max()) == 0.0  # only hiss up there (2x its power is needed)
    assert float(weight[(freqs > 100) & (freqs < 1000)].min()) > 0.9  # signal far above the hiss
    noise_only = noise_weight(n, [hissy(0.002)], n_fft)
    assert float(noise_only.max()) == 0.0


def test_hiss_above_the_cutoff_opens_the_plain_fit_but_not_the_noise_weighted_one():
    """y = h ∗ x + n, and an estimate x̂₀ = x + n that has kept the observation's hiss (as guidance toward
    a hissy y does at low σ): above the cutoff y and x̂₀ share the hiss, so the plain fit passes it and
    opens the filter; the weighted fit, which skips the bins where y is only hiss, finds the cutoff."""
    generator = torch.Generator().manual_seed(4)
    prior = StationaryPrior(16384)
    prior.power = prior.power / (1 + torch.fft.rfftfreq(16384, 1 / SR, dtype=torch.float64) / 200) ** 3
    x = prior.draw(4, generator)  # dark like piano: the hiss is above the signal from a few kHz up
    x = x * 0.057 / x.std()
    truth = BlindLowPass(2500.0, SR, slope_db=36.0)
    n = 0.004 * torch.randn(4, 16384, generator=generator, dtype=torch.float64)
    y = truth(x) + n
    results = {}
    for weighted in (False, True):
        op = BlindLowPass(4000.0, SR, slope_db=12.0)
        weight = noise_weight(y, [hissy(0.004)], op.fit_size(16384)) if weighted else None
        for _ in range(40):
            op.fit(x + n, y, steps=25, weight=weight)
        results[weighted] = op.estimated_response()
    assert results[True][0] == pytest.approx(2500.0, rel=0.1)
    assert abs(results[False][0] - 2500.0) > 2 * abs(results[True][0] - 2500.0)


def test_filter_estimation_weights_its_fit_when_hiss_follows_the_filter():
    y = tone(300.0).repeat(2, 1) + 0.001 * torch.randn(2, 16384, dtype=torch.float64)
    blind = BlindLowPass(3000.0, SR)
    assert FilterEstimation(lambda x, sigma: x, blind, y).weight is None
    chained = FilterEstimation(lambda x, sigma: x, Compose(blind, hissy(0.001)), y)
    assert chained.weight is not None and chained.weight.shape == (blind.fit_size(16384) // 2 + 1,)
    # y denoised (the hiss removed first): an unweighted fit at every noise level (weighing it by the
    # hiss removed made the estimates steeper and lost SI-SDR on valid segments, docs/benchmarks.md)
    after = FilterEstimation(lambda x, sigma: x, blind.after_hiss(hissy(0.001)), y)
    assert after.weight is None and after.sigma_max == math.inf and chained.sigma_max == HISS_FIT_SIGMA_MAX


def test_with_hiss_the_filter_is_fitted_only_at_low_noise_levels():
    y = tone(300.0)
    blind = BlindLowPass(3000.0, SR)
    plain = FilterEstimation(lambda x, sigma: x, blind, y, steps=1)
    chained = FilterEstimation(lambda x, sigma: x, Compose(blind, hissy(0.001)), y, steps=1)
    assert plain.sigma_max == math.inf and chained.sigma_max == HISS_FIT_SIGMA_MAX
    chained(y, torch.tensor([0.2]))
    assert blind.state.steps == 0  # above the limit: no fit
    chained(y, torch.tensor([HISS_FIT_SIGMA_MAX / 2]))
    plain(y, torch.tensor([0.2]))
    assert blind.state.steps == 2


def test_the_joint_estimate_recovers_the_cutoff_on_a_gaussian_prior():
    """BABE's alternation with the exact denoiser of a stationary Gaussian prior: starting 1 kHz off, the
    estimated cutoff lands within 10 % of the true one, and the restored band above it has about the
    prior's energy (the estimate did not just explain the missing band away)."""
    generator = torch.Generator().manual_seed(1)
    prior = StationaryPrior(16384)
    x = prior.draw(4, generator)
    truth = BlindLowPass(3000.0, SR, slope_db=48.0)
    y = truth(x)
    op = BlindLowPass(4000.0, SR, slope_db=24.0)
    estimation = FilterEstimation(prior.denoiser, op, y, steps=25)
    sampler = SamplerOptions(steps=30, sigma_max=1.0, s_churn=0.0, solver="dpmpp2m")
    out = restore_segments(estimation, op, y, GuidanceOptions("dc"), sampler, generator)
    cutoff, slope = op.estimated_response()
    assert cutoff == pytest.approx(3000.0, rel=0.1)
    assert slope > 12.0
    band = torch.fft.rfftfreq(16384, 1 / SR) > 5000
    restored = torch.fft.rfft(out.double())[:, band].abs().square().mean()
    clean = torch.fft.rfft(x)[:, band].abs().square().mean()
    assert 0.5 < float(restored / clean) < 2.0


def test_the_blind_lowpass_is_a_bandwidth_extension_task():
    op = BlindLowPass(3000.0, SR)
    assert task_of(op) == "bwe" and default_guidance(op).mode == "dc"
    assert resolve("balanced", op).warm_start and has_estimate(op)
    y = tone(300.0)
    assert torch.equal(classical_estimate(op, y), y)
    assert "blind lowpass (starting at: -3 dB at 3000 Hz, 24 dB/octave)" == op.describe()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cutoff_hz": 0.0}, "starting cutoff"),
        ({"cutoff_hz": 12000.0}, "starting cutoff"),
        ({"slope_db": 0.5}, "starting slope"),
        ({"slope_db": float("nan")}, "starting slope"),
        ({"learning_rate": -1.0}, "learning rate"),
        ({"regularisation": 0.0}, "regularisation"),
        ({"stopband_hz": 11025.0}, "stopband"),
        ({"stopband_hz": -1.0}, "stopband"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlindLowPass(**{"cutoff_hz": 3000.0, "sample_rate": SR, **kwargs})


def test_a_known_filter_of_the_family_is_never_estimated():
    known = BlindLowPass(3000.0, SR, slope_db=36.0, estimate=False)
    assert not known.needs_estimate and not known.at_rate(44100).needs_estimate
    assert known.describe() == "lowpass (-3 dB at 3000 Hz, 36 dB/octave, Butterworth magnitude)"
    with pytest.raises(ValueError, match="known filter"):
        FilterEstimation(lambda x, sigma: x, known, tone(300.0))
    blind = BlindLowPass(3000.0, SR)
    assert blind.needs_estimate
    blind.fit(tone(300.0), tone(300.0), steps=1)
    assert not blind.needs_estimate and blind.describe().startswith("blind lowpass (estimated: ")


def test_the_array_api_estimates_a_blind_lowpass_and_keeps_the_estimate_on_it():
    import cqtrestore

    x = StationaryPrior(3 * SR).draw(1, torch.Generator().manual_seed(2))[0]
    y = BlindLowPass(2000.0, 44100, slope_db=48.0, estimate=False)(x[None])[0].numpy()
    op = cqtrestore.BlindLowPass(3000.0, 44100)
    out = cqtrestore.restore(y, 44100, op, checkpoint="debug", steps=2, device="cpu")
    assert out.shape == y.shape and np.all(np.isfinite(out))
    assert not op.needs_estimate and len(op.state.history) > 0
    assert op.estimated_response() == pytest.approx(op.state.history[-1][:2])
