"""Warm starts and quality presets: estimates, the Gaussian test prior, and what each preset resolves to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqtrestore.aspade import aspade_declip
from cqtrestore.baselines import lpc_inpaint
from cqtrestore.diffusion import SamplerOptions
from cqtrestore.guidance import GuidanceOptions
from cqtrestore.noise import Hiss
from cqtrestore.operators import Clip, Compose, Gap, Identity, LowPass, Stack
from cqtrestore.pipeline import restore_segments
from cqtrestore.quality import PRESETS, QUALITIES, resolve, task_of
from cqtrestore.warmstart import classical_estimate, has_estimate
from tests.gaussian_prior import GaussianPrior

SR = 22050
GAP = (224, 288)


def music(length: int = 8192, seed: int = 0) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float64) / SR
    g = torch.Generator().manual_seed(seed)
    tones = sum(
        torch.sin(2 * torch.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 440.0, 1320.0, 4400.0))
    )
    return (0.05 * tones + 0.002 * torch.randn(length, generator=g, dtype=torch.float64))[None]


def test_classical_estimates_are_the_baselines_row_by_row():
    x = torch.cat([music(seed=0), music(seed=1)])
    lowpass, gap, clip = LowPass(3000, SR), Gap.from_samples([(3000, 3600)], SR), Clip(0.04)
    torch.testing.assert_close(classical_estimate(lowpass, lowpass(x)), lowpass(x))  # the band it has
    torch.testing.assert_close(classical_estimate(gap, gap(x)), lpc_inpaint(gap(x), gap))
    declipped = classical_estimate(clip, clip(x))
    np.testing.assert_allclose(declipped[0].numpy(), aspade_declip(clip(x)[0].numpy(), 0.04))
    both = Stack([gap, Gap.from_samples([(100, 200)], SR)])
    mixed = classical_estimate(both, both(x))
    torch.testing.assert_close(mixed[1:], lpc_inpaint(x[1:] * 1, Gap.from_samples([(100, 200)], SR)))
    assert not has_estimate(Identity()) and not has_estimate(Compose(gap, Identity()))
    assert not has_estimate(Stack([gap, Identity()]))


def test_a_chains_estimate_undoes_its_parts_last_first():
    x = music()
    clip, gap = Clip(0.04), Gap.from_samples([(3000, 3600)], SR)
    chain = Compose(clip, gap)  # clipped, then a gap cut into it
    y = chain(x)
    assert has_estimate(chain) and has_estimate(Compose(LowPass(3000, SR), Hiss.white(-50.0, SR)))
    expected = torch.from_numpy(aspade_declip(lpc_inpaint(y, gap)[0].numpy(), 0.04))[None]
    torch.testing.assert_close(classical_estimate(chain, y), expected)
    hissy = Compose(LowPass(3000, SR), Hiss.white(-50.0, SR))
    torch.testing.assert_close(classical_estimate(hissy, y), y)  # both parts keep what y has
    with pytest.raises(ValueError, match="start from noise"):
        classical_estimate(Identity(), x)


@pytest.mark.parametrize("estimate_kind", ["zeros", "lpc"])
def test_warm_start_is_never_worse_than_its_estimate_on_the_gaussian_prior(estimate_kind):
    # Posterior samples: their average approaches the posterior mean (never worse in MSE than the start,
    # whatever σ₀), and each sample has the posterior's energy in the gap (the estimates have less).
    prior = GaussianPrior(512)
    x = prior.draw(64, torch.Generator().manual_seed(0))
    gap = Gap.from_samples([GAP], SR)
    y = gap(x)
    estimate = y.clone() if estimate_kind == "zeros" else lpc_inpaint(y, gap, order=32)
    inside = slice(*GAP)
    mse = lambda a: float((a[:, inside] - x[:, inside]).pow(2).mean())  # noqa: E731
    energy = lambda a: float(a[:, inside].pow(2).mean())  # noqa: E731
    for sigma_start in (0.02, 0.1, 0.5):
        options = SamplerOptions(steps=8, sigma_max=sigma_start, s_churn=0.0, solver="dpmpp2m")
        seeds = [torch.Generator().manual_seed(s) for s in range(8)]
        samples = [
            restore_segments(prior.denoiser, gap, y, GuidanceOptions("dc"), options, g, estimate)
            for g in seeds
        ]
        assert mse(sum(samples) / len(samples)) <= 1.02 * mse(estimate), sigma_start
        truth = energy(x)
        assert abs(energy(samples[0]) - truth) <= abs(energy(estimate) - truth) + 0.05 * truth, sigma_start
        torch.testing.assert_close(samples[0][:, : GAP[0]], x[:, : GAP[0]])  # the context stays exact


def test_a_warm_start_from_the_truth_at_tiny_sigma_stays_there():
    prior = GaussianPrior(128)
    x = prior.draw(4, torch.Generator().manual_seed(1))
    gap = Gap.from_samples([(40, 80)], SR)
    options = SamplerOptions(steps=4, sigma_max=1e-3, sigma_min=1e-5, s_churn=0.0, solver="dpmpp2m")
    out = restore_segments(prior.denoiser, gap, gap(x), GuidanceOptions("dc"), options, None, start=x)
    assert (out - x).abs().max() < 0.03 * x.abs().max()


def test_presets_resolve_to_the_documented_settings():
    lowpass, gap, clip = LowPass(3000, SR), Gap([(0.5, 0.7)], SR), Clip(0.1)
    best = resolve("best", gap)
    assert best.sampler == SamplerOptions() and not best.warm_start and best.evaluations == 69
    assert best.guidance == GuidanceOptions("dc+rg")
    for quality in ("fast", "balanced"):
        for operator, task in ((lowpass, "bwe"), (gap, "inpaint"), (clip, "declip")):
            plan, setting = resolve(quality, operator), PRESETS[quality][task]
            assert plan.warm_start == (setting.sigma_start is not None)
            assert plan.sampler.sigma_max == (setting.sigma_start or 1.0)
            assert plan.sampler.solver == setting.solver and plan.sampler.steps == setting.steps
            assert plan.guidance.rg_sigma_min == setting.rg_sigma_min
            assert plan.guidance.dc_sigma_min == setting.dc_sigma_min
            assert plan.draws == setting.draws and plan.evaluations == plan.sampler.evaluations * plan.draws
            assert plan.evaluations < best.evaluations / 4
        assert (
            resolve(quality, lowpass).guidance.mode == "dc"
            and resolve(quality, clip).guidance.mode == "dc+rg"
        )
        chain = resolve(quality, Compose(clip, lowpass))
        assert chain.warm_start and chain.sampler.sigma_max == 0.2 and chain.guidance.mode == "rg"
        assert chain.guidance.rg_sigma_min == 0.01
        unestimated = resolve(quality, Compose(gap, Identity()))  # a part without a classical estimate
        assert not unestimated.warm_start and unestimated.sampler.sigma_max == 1.0
    assert PRESETS["fast"]["bwe"].steps < PRESETS["balanced"]["bwe"].steps
    assert resolve("balanced", clip).guidance.dc_sigma_min == 0.005  # declipping: the prior smooths last
    # balanced averages two draws where SI-SDR counts (gaps, clipping); fast and bandwidth extension: one
    assert [resolve("balanced", op).draws for op in (lowpass, gap, clip)] == [1, 3, 2]
    assert all(resolve("fast", op).draws == 1 for op in (lowpass, gap, clip))
    assert set(QUALITIES) == set(PRESETS)
    assert (
        task_of(Stack([gap, Gap([(0.1, 0.2)], SR)])) == "inpaint"
        and task_of(Compose(clip, lowpass)) == "composite"
    )
    with pytest.raises(ValueError, match="quality"):
        resolve("ultra", gap)
