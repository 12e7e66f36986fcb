"""Data consistency and reconstruction guidance, checked on a Gaussian prior with closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from cqtrestore.diffusion import sample
from cqtrestore.guidance import (
    DataConsistency,
    GuidanceOptions,
    ReconstructionGuidance,
    guided_denoiser,
    observe,
)
from cqtrestore.operators import Clip, Compose, Gap, LowPass
from tests.gaussian_prior import GaussianPrior

LENGTH = 64
GAP = Gap.from_samples([(24, 40)], sample_rate=LENGTH)  # a 16-sample hole in a 64-sample signal


@pytest.fixture(scope="module")
def inpainting_problem():
    prior = GaussianPrior(LENGTH)
    x = prior.draw(1, torch.Generator().manual_seed(0))
    y = GAP(x)
    observed = GAP.mask(LENGTH, torch.device("cpu"), torch.float64).bool()
    mean, cov = prior.posterior(observed, y[0])
    return prior, y, observed, mean, cov


def missing_statistics(samples, observed, mean, cov):
    """Largest error of the sample mean (in posterior stds) and the range of variance ratios."""
    missing = samples[:, ~observed]
    mean_error = ((missing.mean(dim=0) - mean) / cov.diag().sqrt()).abs().max().item()
    ratio = missing.var(dim=0) / cov.diag()
    return mean_error, ratio.min().item(), ratio.max().item()


def test_sampler_draws_the_analytic_posterior_given_the_exact_conditional_denoiser(inpainting_problem):
    prior, y, observed, mean, cov = inpainting_problem
    count = 4000
    samples = sample(
        prior.conditional_denoiser(observed, y[0]),
        (count, LENGTH),
        steps=100,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    mean_error, low, high = missing_statistics(samples, observed, mean, cov)
    assert mean_error < 4 / math.sqrt(count)  # 4 standard errors of a mean
    assert 1 - 5 * math.sqrt(2 / count) - 0.02 < low and high < 1 + 5 * math.sqrt(2 / count) + 0.02
    torch.testing.assert_close(samples[:, observed], y[:, observed].expand(count, -1))


def test_data_consistency_keeps_observations_and_approximates_the_posterior(inpainting_problem):
    # Replacement (DC) is the paper's method and is NOT the exact posterior: the denoiser's estimate of the
    # hole ignores that the observed part is known exactly. Measured on this problem (4000 draws, T = 35):
    # mean within 0.26 posterior std, variances 1.03-1.31x; zero-filling would be |mean| / std away, here
    # up to 0.56 (another draw of the problem: 0.59 against 0.95, hence the bound of 0.75x).
    prior, y, observed, mean, cov = inpainting_problem
    count = 4000
    samples = sample(
        guided_denoiser(prior.denoiser, GAP, y),
        (count, LENGTH),
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    assert torch.equal(samples[:, observed], y[:, observed].expand(count, -1))
    mean_error, low, high = missing_statistics(samples, observed, mean, cov)
    assert mean_error < 0.6
    assert mean_error < 0.75 * (mean / cov.diag().sqrt()).abs().max().item()
    assert 0.9 < low and high < 1.4


def test_reconstruction_guidance_lowers_the_residual_on_the_same_seed():
    prior = GaussianPrior(256)
    x = prior.draw(4, torch.Generator().manual_seed(3))
    for operator in (Gap.from_samples([(100, 160)], 256), LowPass(40, 256, order=64), Clip.from_sdr(x, 3.0)):
        y = operator(x)
        runs = {}
        for name, denoiser in (
            ("none", prior.denoiser),
            ("rg", guided_denoiser(prior.denoiser, operator, y, GuidanceOptions("rg", 0.35))),
        ):
            out = sample(denoiser, (4, 256), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
            runs[name] = (y - operator(out)).flatten(1).norm(dim=1)
        assert torch.all(runs["rg"] < 0.5 * runs["none"]), operator.describe()


def test_guidance_step_is_xi_sqrt_n_over_gradient_norm_per_item():
    prior = GaussianPrior(LENGTH)
    x = torch.randn(2, LENGTH, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x[1] *= 100  # a much larger residual must not change the second item's step length
    y = GAP(prior.draw(2, torch.Generator().manual_seed(6)))
    sigma = torch.tensor(0.3, dtype=torch.float64)
    rg = ReconstructionGuidance(prior.denoiser, GAP, y, xi=0.35)
    # Closed form: D = W x with W symmetric, so ∇ₓ‖y − M W x‖² = −2 W M (y − M W x).
    mask = GAP.mask(LENGTH, torch.device("cpu"), torch.float64)
    denoised = prior.denoiser(x, sigma)
    grad = prior.denoiser(-2 * mask * (y - mask * denoised), sigma)
    step = 0.35 * math.sqrt(LENGTH) / grad.norm(dim=1, keepdim=True)
    torch.testing.assert_close(rg(x, sigma), denoised - 0.3 * step * grad)
    assert torch.allclose(
        (rg(x, sigma) - denoised).norm(dim=1), torch.full((2,), 0.3 * 0.35 * 8.0, dtype=torch.float64)
    )


def test_dc_plus_rg_ends_consistent_with_observation():
    prior = GaussianPrior(LENGTH)
    y = GAP(prior.draw(1, torch.Generator().manual_seed(7)))
    denoiser = guided_denoiser(prior.denoiser, GAP, y, GuidanceOptions("dc+rg", 0.35))
    out = sample(denoiser, (3, LENGTH), generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    mask = GAP.mask(LENGTH, torch.device("cpu"), torch.float64).bool()
    assert torch.equal(out[:, mask], y[:, mask].expand(3, -1))


def test_modes_and_validation():
    prior = GaussianPrior(LENGTH)
    y = torch.zeros(1, LENGTH, dtype=torch.float64)
    assert isinstance(guided_denoiser(prior.denoiser, GAP, y), DataConsistency)
    assert isinstance(guided_denoiser(prior.denoiser, GAP, y, GuidanceOptions("rg")), ReconstructionGuidance)
    with pytest.raises(ValueError, match="unknown guidance mode"):
        GuidanceOptions("replace")
    with pytest.raises(ValueError, match="xi"):
        GuidanceOptions("rg", xi=-1)
    for mode in ("dc", "dc+rg"):
        with pytest.raises(ValueError, match="no data-consistency projection"):
            guided_denoiser(prior.denoiser, Compose(Clip(0.1), GAP), y, GuidanceOptions(mode))


def test_observation_noise_has_the_requested_snr():
    x = torch.randn(3, 20000, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    lowpass = LowPass(3000, 22050)
    clean = lowpass(x)
    noisy = observe(lowpass, x, snr_db=20, generator=torch.Generator().manual_seed(10))
    snr = 10 * torch.log10(clean.pow(2).sum(dim=1) / (noisy - clean).pow(2).sum(dim=1))
    assert torch.allclose(snr, torch.full((3,), 20.0, dtype=torch.float64), atol=0.1)
    torch.testing.assert_close(observe(lowpass, x), clean)


def test_default_guidance_follows_the_paper_per_task():
    from cqtrestore.guidance import default_guidance
    from cqtrestore.operators import Clip, Compose, Gap, LowPass

    assert default_guidance(LowPass(3000, 22050)).mode == "dc"
    assert default_guidance(Gap([(0.1, 0.2)], 22050)) == GuidanceOptions("dc+rg", 0.35)
    assert default_guidance(Clip(0.1), xi=0.5) == GuidanceOptions("dc+rg", 0.5)  # consistent declipping
    assert default_guidance(Compose(Clip(0.1), LowPass(3000, 22050))).mode == "rg"
    assert default_guidance(Compose(Gap([(0.1, 0.2)], 22050), LowPass(3000, 22050))).mode == "rg"


def test_guidance_below_its_lowest_sigma_is_the_projection_alone_with_no_gradient():
    prior = GaussianPrior(LENGTH)
    x = prior.draw(2, torch.Generator().manual_seed(2))
    y, backward_calls = GAP(x), []

    class Counting(torch.nn.Module):
        def forward(self, x, sigma):
            out = prior.denoiser(x, sigma)
            if out.requires_grad:
                out.register_hook(lambda grad: backward_calls.append(1))
            return out

    guided = guided_denoiser(Counting(), GAP, y, GuidanceOptions("dc+rg", 0.35, rg_sigma_min=0.1))
    plain = guided_denoiser(Counting(), GAP, y, GuidanceOptions("dc+rg", 0.35))
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    below = guided(noisy, torch.tensor(0.05))
    assert backward_calls == []  # no backward pass at σ 0.05 < 0.1
    torch.testing.assert_close(below, GAP.project(prior.denoiser(noisy, 0.05), y))
    torch.testing.assert_close(guided(noisy, torch.tensor(0.2)), plain(noisy, torch.tensor(0.2)))
    assert len(backward_calls) == 2  # above it: the full RG step, as without a threshold
    rg_only = guided_denoiser(Counting(), GAP, y, GuidanceOptions("rg", 0.35, rg_sigma_min=0.1))
    torch.testing.assert_close(rg_only(noisy, torch.tensor(0.05)), prior.denoiser(noisy, 0.05))
    with pytest.raises(ValueError, match="rg_sigma_min"):
        GuidanceOptions("rg", 0.35, rg_sigma_min=-1.0)


def test_the_projection_stops_below_its_lowest_sigma_and_the_prior_alone_finishes():
    prior = GaussianPrior(LENGTH)
    x = prior.draw(2, torch.Generator().manual_seed(4))
    y = GAP(x)
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    for mode in ("dc", "dc+rg"):
        floored = guided_denoiser(prior.denoiser, GAP, y, GuidanceOptions(mode, 0.35, dc_sigma_min=0.1))
        plain = guided_denoiser(prior.denoiser, GAP, y, GuidanceOptions(mode, 0.35))
        # Above the floor: exactly the projected estimate; below it: not projected (the gap's
        # context is left to the prior, so it no longer equals y there).
        torch.testing.assert_close(floored(noisy, torch.tensor(0.2)), plain(noisy, torch.tensor(0.2)))
        below = floored(noisy, torch.tensor(0.05))
        if mode == "dc":
            torch.testing.assert_close(below, prior.denoiser(noisy, 0.05))
        assert not torch.allclose(below, plain(noisy, torch.tensor(0.05)))
    with pytest.raises(ValueError, match="dc_sigma_min"):
        GuidanceOptions("dc", 0.35, dc_sigma_min=-1.0)
