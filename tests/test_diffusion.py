"""EDM preconditioning, loss, schedules and the Heun sampler, checked against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from cqtrestore.diffusion import (
    Denoiser,
    EDMLoss,
    SamplerOptions,
    ZeroNetwork,
    karras_schedule,
    rfft_weights,
    run_sampler,
    sample,
    sample_dpmpp_2m,
    sample_heun,
    spectrum_on_grid,
    training_sigmas,
)
from tests.gaussian_prior import GaussianPrior


class RecordingNet(torch.nn.Module):
    """Returns 3·input + c_noise, so the preconditioning can be checked term by term."""

    def forward(self, x, c_noise):
        self.seen = (x.clone(), c_noise.clone())
        return 3 * x + c_noise


def test_preconditioning_matches_edm_formulas():
    sigma_data = 0.057
    denoiser = Denoiser(RecordingNet(), sigma_data)
    x = torch.randn(2, 16, dtype=torch.float64)
    sigma = torch.tensor([0.5, 0.01], dtype=torch.float64)
    out = denoiser(x, sigma)
    s = sigma[:, None]
    c_skip = sigma_data**2 / (s**2 + sigma_data**2)
    c_out = s * sigma_data / (s**2 + sigma_data**2).sqrt()
    c_in = 1 / (s**2 + sigma_data**2).sqrt()
    torch.testing.assert_close(denoiser.net.seen[0], c_in * x)
    torch.testing.assert_close(denoiser.net.seen[1], torch.log(s) / 4)
    torch.testing.assert_close(out, c_skip * x + c_out * (3 * c_in * x + torch.log(s) / 4))


def test_scalar_sigma_broadcasts_and_small_sigma_is_identity():
    denoiser = Denoiser(RecordingNet())
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, 0.3), denoiser(x, torch.full((3,), 0.3, dtype=torch.float64)))
    torch.testing.assert_close(denoiser(x, 1e-12), x, atol=1e-9, rtol=0)


def test_loss_weight_is_inverse_c_out_squared():
    loss = EDMLoss(sigma_data=0.057)
    sigma = torch.logspace(-6, 1, 20, dtype=torch.float64)
    _, c_out, _, _ = Denoiser(ZeroNetwork(), 0.057).scalings(sigma)
    torch.testing.assert_close(loss.weight(sigma) * c_out**2, torch.ones_like(sigma))


@pytest.mark.parametrize("sigma", [1e-3, 0.057, 2.0])
def test_loss_is_one_for_the_optimal_zero_network_on_gaussian_data(sigma):
    # For x ~ N(0, σ_d²) the best denoiser is c_skip·x, i.e. F = 0, and λ(σ)·E‖D − x‖² = 1 exactly.
    g = torch.Generator().manual_seed(0)
    x = 0.057 * torch.randn(4000, 64, generator=g, dtype=torch.float64)
    values = EDMLoss(0.057)(Denoiser(ZeroNetwork(), 0.057), x, torch.full((4000,), sigma), generator=g)
    assert values.shape == (4000,)
    assert abs(values.mean().item() - 1) < 0.01


def test_rho_training_sigmas_follow_their_distribution():
    g = torch.Generator().manual_seed(1)
    sigmas = training_sigmas(20000, "rho", sigma_min=1e-6, sigma_max=10, rho=10, generator=g).double()
    assert sigmas.min() >= 1e-6 and sigmas.max() <= 10
    lo, hi = 1e-6**0.1, 10**0.1
    for s in (1e-4, 1e-2, 0.057, 1.0):
        expected = 1 - (s**0.1 - hi) / (lo - hi)
        assert abs((sigmas <= s).double().mean().item() - expected) < 0.015


def test_focused_training_sigmas_mix_a_log_uniform_range_into_the_wide_distribution():
    args = dict(sigma_min=1e-6, sigma_max=10, rho=10)
    plain = training_sigmas(20000, "rho", generator=torch.Generator().manual_seed(1), **args)
    # share 0 draws nothing more: the stream (and so a resumed run) is what it was without focus
    same = training_sigmas(20000, "rho", generator=torch.Generator().manual_seed(1), focus_share=0.0, **args)
    assert torch.equal(plain, same)
    g = torch.Generator().manual_seed(1)
    mixed = training_sigmas(20000, "rho", generator=g, focus=(1e-4, 0.3), focus_share=0.7, **args).double()
    lo, hi = 1e-6**0.1, 10**0.1

    def wide(s: float) -> float:  # the rho distribution's CDF
        return 1 - (s**0.1 - hi) / (lo - hi)

    def focused(s: float) -> float:  # log-uniform on [1e-4, 0.3]
        return min(max(math.log(s / 1e-4) / math.log(0.3 / 1e-4), 0.0), 1.0)

    for s in (1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.3, 1.0, 5.0):
        expected = 0.3 * wide(s) + 0.7 * focused(s)
        assert abs((mixed <= s).double().mean().item() - expected) < 0.015
    assert mixed.min() >= 1e-6 and mixed.max() <= 10


def test_lognormal_training_sigmas():
    g = torch.Generator().manual_seed(2)
    log_sigmas = training_sigmas(20000, "lognormal", sigma_min=1e-9, sigma_max=1e9, generator=g).log()
    assert abs(log_sigmas.mean().item() + 1.2) < 0.03 and abs(log_sigmas.std().item() - 1.2) < 0.03
    with pytest.raises(ValueError, match="unknown sigma distribution"):
        training_sigmas(4, "uniform")


def test_schedule_matches_paper():
    sigmas = karras_schedule(35, 1e-4, 1.0, 13)
    assert sigmas.shape == (36,) and sigmas[-1] == 0
    assert sigmas[0] == pytest.approx(1.0) and sigmas[34] == pytest.approx(1e-4)
    assert torch.all(sigmas[1:] < sigmas[:-1])
    # ρ-spacing: σ_i^(1/ρ) is linear in i.
    steps = sigmas[:35] ** (1 / 13)
    torch.testing.assert_close(steps.diff(), steps.diff()[:1].expand(34))
    torch.testing.assert_close(karras_schedule(1, 1e-4, 1.0, 13), torch.tensor([1.0, 0.0]).to(sigmas))
    with pytest.raises(ValueError):
        karras_schedule(0)


def heun_gain_and_variance(eigenvalue, sigmas, churn):
    """Per eigen-direction of a Gaussian prior, Algorithm 2 is linear: x ← a·(x + noise). Track Var(x)."""
    steps = len(sigmas) - 1
    variance, gains = float(sigmas[0]) ** 2, []
    for i in range(steps):
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(churn / steps, math.sqrt(2) - 1)
        t_hat = t + gamma * t
        slope = t_hat / (eigenvalue + t_hat**2)
        h = t_next - t_hat
        gain = 1 + h * slope
        if t_next > 0:
            gain = 1 + h / 2 * (slope + (1 + h * slope) * t_next / (eigenvalue + t_next**2))
        variance = gain**2 * (variance + t_hat**2 - t**2)
        gains.append(gain)
    return math.prod(gains), variance


def test_deterministic_heun_is_exactly_algorithm_2():
    prior = GaussianPrior(32)
    sigmas = karras_schedule(35)
    noise = torch.randn(5, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = sample_heun(prior.denoiser, noise, sigmas, s_churn=0)
    gains = torch.tensor([heun_gain_and_variance(float(lam), sigmas, 0)[0] for lam in prior.eigenvalues])
    expected = ((noise @ prior.eigenvectors) * gains.double()) @ prior.eigenvectors.T
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-8)  # outputs have std ≈ 0.057


def test_stochastic_sampler_variance_matches_recursion_and_converges_to_prior():
    prior = GaussianPrior(64)
    g = torch.Generator().manual_seed(4)
    count = 4000
    for steps, tolerance in ((35, 0.08), (100, 0.03)):
        x = sample(prior.denoiser, (count, 64), steps=steps, generator=g, dtype=torch.float64)
        measured = (x @ prior.eigenvectors).pow(2).mean(dim=0)
        sigmas = karras_schedule(steps)
        predicted = torch.tensor(
            [heun_gain_and_variance(float(v), sigmas, 5.0)[1] for v in prior.eigenvalues]
        )
        # Sampling error of a variance from `count` draws: relative std √(2/count) ≈ 1.6 %.
        assert (measured / predicted.double() - 1).abs().max() < 5 * math.sqrt(2 / count)
        # And the sampler's discretisation error against the true covariance C shrinks with more steps.
        assert (predicted.double() / prior.eigenvalues - 1).abs().max() < tolerance


def test_sampler_is_reproducible_and_calls_back():
    prior = GaussianPrior(16)
    seen = []
    kwargs = dict(steps=35, dtype=torch.float64)
    a = sample(
        prior.denoiser,
        (2, 16),
        generator=torch.Generator().manual_seed(5),
        **kwargs,
        callback=lambda i, x, denoised, sigma: seen.append((i, sigma)),
    )
    b = sample(prior.denoiser, (2, 16), generator=torch.Generator().manual_seed(5), **kwargs)
    c = sample(prior.denoiser, (2, 16), generator=torch.Generator().manual_seed(6), **kwargs)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert [i for i, _ in seen] == list(range(35))
    assert seen[0][1] == pytest.approx(1 + 5 / 35)  # t̂_0 = t_0 + γ t_0 with γ = S_churn / N
    assert seen[-1][1] == pytest.approx(1e-4 * (1 + 5 / 35))


def test_noise_per_item_generator_does_not_depend_on_the_batch():
    from cqtrestore.diffusion import noise_like

    x = torch.zeros(3, 100)
    batch = noise_like(x, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    alone = noise_like(x[:1], [torch.Generator().manual_seed(2)])
    assert torch.equal(batch[1:2], alone) and not torch.equal(batch[0], batch[1])
    assert torch.equal(
        noise_like(x, torch.Generator().manual_seed(4)),
        torch.randn(3, 100, generator=torch.Generator().manual_seed(4)),
    )
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        noise_like(x, [torch.Generator(), torch.Generator()])


# --- spectral preconditioning -------------------------------------------------------------------


def circulant_wiener(x: torch.Tensor, power: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x₀ | x] for a stationary (circulant) Gaussian x₀ with rfft-bin power ``power``."""
    return torch.fft.irfft(torch.fft.rfft(x) * power / (power + sigma**2), n=x.shape[-1])


def test_spectral_zero_network_is_the_exact_gaussian_denoiser():
    # With F = 0, D is the Wiener filter P/(P + σ²): the posterior mean of a stationary Gaussian with
    # spectrum P, the same role c_skip plays for white data of variance σ_data². Without edge padding it
    # is the circulant one; with it, the same filter on the reflected extension, cropped.
    spectrum = torch.logspace(-2, -9, 65, dtype=torch.float64)  # 70 dB darker at Nyquist than at DC
    x = torch.randn(3, 1024, dtype=torch.float64)
    circular = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=0)
    padded = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=100)
    extended = torch.cat([x[:, 1:101].flip(-1), x, x[:, -101:-1].flip(-1)], dim=-1)
    for sigma in (1e-3, 0.05, 1.0):
        power = spectrum_on_grid(spectrum, 1024)
        torch.testing.assert_close(circular(x, sigma), circulant_wiener(x, power, sigma))
        wiener = circulant_wiener(extended, spectrum_on_grid(spectrum, 1224), sigma)[:, 100:1124]
        torch.testing.assert_close(padded(x, sigma), wiener)


def test_edge_padding_keeps_the_jump_across_the_window_out_of_its_edges():
    # A smooth signal whose ends differ: circular filters spread the jump between its last and first
    # sample over both edges; on the reflected extension only a kink remains.
    spectrum = torch.logspace(-2, -9, 65, dtype=torch.float64)
    n = torch.arange(1024, dtype=torch.float64)
    x = (torch.sin(2 * math.pi * 5.3 * n / 1024) + n / 1024)[None]
    errors = {}
    for pad in (0, 2048):
        error = (Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=pad)(x, 1e-3) - x).abs()[0]
        errors[pad] = (max(error[:32].max(), error[-32:].max()).item(), error[256:768].max().item())
    assert errors[0][0] > 0.3 and errors[2048][0] < 0.02  # the edges: 47x less error
    assert errors[0][1] == pytest.approx(errors[2048][1], rel=1e-3) and errors[0][1] < 1e-3  # the middle
    with pytest.raises(ValueError, match="edge_pad"):
        Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=-1)


def test_spectrum_on_grid_interpolates_log_power_between_table_points():
    spectrum = torch.tensor([1.0, 1e-2, 1e-4], dtype=torch.float64)  # 0 Hz, Nyquist/2, Nyquist
    grid = spectrum_on_grid(spectrum, 8)  # rfft bins at 0, 1/4, 1/2, 3/4 and 1 of Nyquist
    torch.testing.assert_close(grid, torch.tensor([1.0, 1e-1, 1e-2, 1e-3, 1e-4], dtype=torch.float64))
    odd = spectrum_on_grid(spectrum, 7)  # bins at 0, 2/7, 4/7, 6/7 of Nyquist
    torch.testing.assert_close(
        odd.log10(), torch.tensor([0.0, -8 / 7, -16 / 7, -24 / 7], dtype=torch.float64)
    )


def test_constant_spectrum_is_the_scalar_preconditioning():
    net = RecordingNet()
    x = 0.1 * torch.randn(2, 256, dtype=torch.float64)
    scalar, spectral = Denoiser(net, 0.057), Denoiser(net, 0.057, spectrum=[0.057**2] * 9)
    noise = torch.randn_like(x)
    for sigma in (1e-4, 0.03, 3.0):
        torch.testing.assert_close(spectral(x, sigma), scalar(x, sigma))
        sigmas = torch.full((2,), sigma, dtype=torch.float64)
        torch.testing.assert_close(
            spectral.weighted_error(x, sigmas, noise), scalar.weighted_error(x, sigmas, noise)
        )


@pytest.mark.parametrize("sigma", [1e-3, 0.05, 2.0])
def test_spectral_loss_is_one_for_the_zero_network_on_its_own_gaussian(sigma):
    # Draws of the circulant Gaussian with spectrum P: F = 0 is optimal and scores 1 at every σ,
    # in every band alike (the quietest bands, 60 dB down, weigh as much as the loudest).
    g = torch.Generator().manual_seed(3)
    spectrum = torch.logspace(-2, -8, 33, dtype=torch.float64)
    power = spectrum_on_grid(spectrum, 256)
    white = torch.fft.rfft(torch.randn(3000, 256, generator=g, dtype=torch.float64))
    x = torch.fft.irfft(white * power.sqrt(), n=256)
    values = EDMLoss()(Denoiser(ZeroNetwork(), spectrum=spectrum), x, torch.full((3000,), sigma), generator=g)
    assert abs(values.mean().item() - 1) < 0.02


def test_spectral_denoiser_passes_gradients_to_its_input_and_network():
    net = torch.nn.Conv1d(1, 1, 5, padding=2, bias=False)
    wrapped = type("Net", (torch.nn.Module,), {"forward": lambda self, x, c: net(x[:, None])[:, 0]})()
    denoiser = Denoiser(wrapped, spectrum=torch.logspace(-2, -6, 17))
    x = torch.randn(2, 128, requires_grad=True)
    denoiser(x, 0.1).square().sum().backward()
    assert x.grad is not None and net.weight.grad is not None and x.grad.abs().sum() > 0


def test_bad_spectra_are_refused():
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [1.0, -1.0]):
        with pytest.raises(ValueError, match="data spectrum"):
            Denoiser(ZeroNetwork(), spectrum=bad)


@pytest.mark.parametrize("edge_pad", [0, 2048])
def test_heun_samples_of_the_spectral_gaussian_prior_have_its_spectrum(edge_pad):
    # The zero network makes the sampler draw from N(0, P): the long-term spectrum of its samples
    # (Hann-windowed, as padded samples are not periodic) matches P band by band (within sampling error
    # and the T = 35 discretisation).
    g = torch.Generator().manual_seed(5)
    spectrum = torch.logspace(-3, -7, 17, dtype=torch.float64)
    denoiser = Denoiser(ZeroNetwork(), spectrum=spectrum, edge_pad=edge_pad)
    samples = sample(denoiser, (256, 512), generator=g, dtype=torch.float64)
    window = torch.hann_window(512, periodic=True, dtype=torch.float64)
    measured = (torch.fft.rfft(samples * window).abs() ** 2).mean(dim=0) / window.pow(2).sum()
    expected = spectrum_on_grid(spectrum, 512)
    bands = lambda p: p[1:-1].reshape(15, -1).mean(dim=1)  # noqa: E731
    ratio_db = 10 * torch.log10(bands(measured) / bands(expected))
    assert ratio_db.abs().max() < 1.0, ratio_db


@pytest.mark.parametrize("spectral", [False, True])
def test_gaussian_flow_is_the_zero_networks_probability_flow_in_closed_form(spectral):
    spectrum = torch.logspace(-1, -8, 64, dtype=torch.float64) if spectral else None
    denoiser = Denoiser(ZeroNetwork(), 0.057, spectrum=spectrum, edge_pad=0)
    x = torch.randn(2, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # Heun's deterministic steps (S_churn = 0) from σ = 1 down to 0.05 on a fine grid: the same ODE.
    sigmas = torch.logspace(0, math.log10(0.05), 400, dtype=torch.float64)
    stepped = sample_heun(denoiser, x, sigmas, s_churn=0.0)
    closed = denoiser.gaussian_flow(x, 1.0, 0.05)
    torch.testing.assert_close(closed, stepped, rtol=0, atol=1e-6 * x.abs().max().item())
    # It inverts and composes.
    torch.testing.assert_close(denoiser.gaussian_flow(closed, 0.05, 1.0), x)
    torch.testing.assert_close(denoiser.gaussian_flow(denoiser.gaussian_flow(x, 1.0, 0.3), 0.3, 0.05), closed)
    if not spectral:
        torch.testing.assert_close(closed, x * math.sqrt((0.057**2 + 0.05**2) / (0.057**2 + 1)))
    with pytest.raises(ValueError, match="sigma_from"):
        denoiser.gaussian_flow(x, 0.0, 0.1)


def dpmpp_gain(eigenvalue: float, sigmas) -> float:
    """Per eigen-direction of a Gaussian prior, deterministic DPM-Solver++(2M) is linear in x_0: track the
    gains of x_i and of D_{i−1} through the recursion written out by hand."""
    x, previous = 1.0, None  # gains relative to the starting noise
    for i in range(len(sigmas) - 1):
        t, t_next = float(sigmas[i]), float(sigmas[i + 1])
        d = eigenvalue / (eigenvalue + t**2) * x
        if t_next == 0:
            return d
        h = math.log(t / t_next)
        estimate = d
        if previous is not None:
            r = math.log(previous[1] / t) / h
            estimate = (1 + 1 / (2 * r)) * d - previous[0] / (2 * r)
        x, previous = t_next / t * x + (1 - t_next / t) * estimate, (d, t)
    return x


def test_deterministic_dpmpp_2m_is_exactly_its_recursion():
    prior = GaussianPrior(32)
    sigmas = karras_schedule(12)
    noise = torch.randn(5, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    out = sample_dpmpp_2m(prior.denoiser, noise, sigmas)
    gains = torch.tensor([dpmpp_gain(float(lam), sigmas) for lam in prior.eigenvalues], dtype=torch.float64)
    expected = ((noise @ prior.eigenvectors) * gains) @ prior.eigenvectors.T
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-8)


def flow_error(solver: str, steps: int) -> float:
    """Largest error of a deterministic run against the probability-flow ODE's exact end point, per unit
    of the prior's std, on the Gaussian test prior (each direction scales by √(λ/(λ + σ_max²)))."""
    prior = GaussianPrior(32)
    noise = torch.randn(4, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    options = SamplerOptions(steps=steps, s_churn=0.0, solver=solver)
    out = run_sampler(prior.denoiser, noise, options)
    exact_gain = (prior.eigenvalues / (prior.eigenvalues + 1.0)).sqrt()
    exact = ((noise @ prior.eigenvectors) * exact_gain) @ prior.eigenvectors.T
    return float((out - exact).abs().max() / 0.057)


@pytest.mark.parametrize("solver", ["heun", "dpmpp2m"])
def test_deterministic_solvers_converge_to_the_flow_at_second_order(solver):
    coarse, fine = flow_error(solver, 10), flow_error(solver, 20)
    assert fine < coarse / 3  # 2nd order: about a quarter per doubling (the ρ schedule's first steps aside)
    assert flow_error(solver, 35) < 0.04  # measured: Heun 0.028, DPM-Solver++(2M) 0.021


def test_dpmpp_2m_beats_heun_at_equal_evaluations():
    # 2T − 1 evaluations of Heun against T' = 2T − 1 steps of DPM-Solver++(2M), at the low counts that matter.
    for steps in (6, 10):
        assert flow_error("dpmpp2m", 2 * steps - 1) < flow_error("heun", steps)


@pytest.mark.parametrize("solver", ["heun", "dpmpp2m"])
def test_evaluations_counts_the_denoiser_calls(solver):
    prior, calls = GaussianPrior(16), []

    def counting(x, sigma):
        calls.append(float(sigma))
        return prior.denoiser(x, sigma)

    options = SamplerOptions(steps=9, solver=solver)
    g = torch.Generator().manual_seed(0)
    out = run_sampler(counting, torch.randn(2, 16, dtype=torch.float64, generator=g), options, g)
    assert len(calls) == options.evaluations == (17 if solver == "heun" else 9) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="solver"):
        SamplerOptions(solver="euler-a")


def test_stochastic_dpmpp_2m_samples_converge_to_the_prior():
    # With churn the multistep history no longer matches the re-noised x: a variance bias that shrinks
    # with the steps (measured +14 % at 60 steps, +7 % at 200; sampling error 2.2 % per direction).
    prior, count = GaussianPrior(64), 4000
    for steps, tolerance in ((60, 0.16), (200, 0.09)):
        g = torch.Generator().manual_seed(9)
        options = SamplerOptions(steps=steps, s_churn=5.0, solver="dpmpp2m")
        x = run_sampler(prior.denoiser, torch.randn(count, 64, generator=g, dtype=torch.float64), options, g)
        measured = (x @ prior.eigenvectors).pow(2).mean(dim=0)
        assert (measured / prior.eigenvalues - 1).abs().max() < tolerance


def _posterior_run(
    solver: str, steps: int, s_churn: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start at x_σ₀ = y for three independent Gaussian coordinates x₀ ~ N(0, c): the samples' mean error
    in posterior standard deviations, and their variance over the posterior's (mean c/(c + σ₀²)·y,
    variance c·σ₀²/(c + σ₀²))."""
    c = torch.tensor([0.057**2, 1e-4, 1e-6], dtype=torch.float64)
    sigma_0, y = 0.03, torch.tensor([0.05, 0.02, 0.01], dtype=torch.float64)
    options = SamplerOptions(steps=steps, sigma_max=sigma_0, s_churn=s_churn, solver=solver)
    generator = torch.Generator().manual_seed(0)
    out = run_sampler(lambda x, s: c / (c + s**2) * x, y.expand(20000, 3).clone(), options, generator)
    mean, var = c / (c + sigma_0**2) * y, c * sigma_0**2 / (c + sigma_0**2)
    return (out.mean(dim=0) - mean) / var.sqrt(), out.var(dim=0) / var, out


def test_ancestral_sampling_from_a_noisy_start_draws_its_posterior():
    bias, var_ratio, _ = _posterior_run("ancestral", 200, 0.0)
    assert float(bias.abs().max()) < 0.05
    torch.testing.assert_close(var_ratio, torch.ones(3, dtype=torch.float64), atol=0.06, rtol=0)
    assert SamplerOptions(steps=7, solver="ancestral").evaluations == 7


def test_churn_from_a_noisy_start_forgets_it():
    """Why hiss removal samples with the ancestral solver: churn keeps the marginals, not the posterior of
    the start (the loudest coordinate's mean is off by half a posterior deviation, its variance triples)."""
    bias, var_ratio, _ = _posterior_run("heun", 400, 20.0)
    assert float(bias[0].abs()) > 0.3 and float(var_ratio[0]) > 2.0


@pytest.mark.parametrize("solver", ["heun", "dpmpp2m", "ancestral"])
def test_one_step_is_the_posterior_mean_at_sigma_max(solver):
    # T = 1: the schedule is [σ_max, 0], one evaluation landing on D(x, σ_max) = E[x | x_σmax] (Tweedie).
    prior, calls = GaussianPrior(16), []

    def counting(x, sigma):
        calls.append(float(sigma))
        return prior.denoiser(x, sigma)

    options = SamplerOptions(steps=1, sigma_max=0.03, solver=solver, s_churn=0.0)
    assert options.sigmas().tolist() == [0.03, 0.0] and options.evaluations == 1
    x = torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.06
    out = run_sampler(counting, x, options, torch.Generator().manual_seed(2))
    assert calls == [0.03]
    torch.testing.assert_close(out, prior.denoiser(x, 0.03))
    with pytest.raises(ValueError, match="from 1 to 10000"):
        SamplerOptions(steps=0)


class Tilted(torch.nn.Module):
    """F = ε·tanh(x): a perturbation of the zero network that is nonlinear in its input."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x, c_noise):
        return self.eps * torch.tanh(x)


def test_local_loss_keeps_the_posterior_mean_as_its_minimiser(monkeypatch):
    # Gaussian draws: F = 0 gives E[x0 | x]. The local weights depend on the noisy x alone, so the mean
    # loss is still smallest there: no slope along a perturbation of F, only curvature. Weights taken
    # from the clean x0 instead would move the minimiser (the second half shows the test can fail).
    g = torch.Generator().manual_seed(5)
    spectrum = torch.logspace(-2, -7, 33, dtype=torch.float64)
    length, count, sigma = 2048, 600, 0.003
    white = torch.fft.rfft(torch.randn(count, length, generator=g, dtype=torch.float64))
    x0 = torch.fft.irfft(white * spectrum_on_grid(spectrum, length).sqrt(), n=length)
    noise = torch.randn(count, length, generator=g, dtype=torch.float64)
    sigmas = torch.full((count,), sigma, dtype=torch.float64)

    def slope_and_curvature() -> tuple[float, float]:
        losses = [
            Denoiser(Tilted(eps), spectrum=spectrum, edge_pad=0)
            .local_weighted_error(x0, sigmas, noise)
            .mean()
            for eps in (-0.3, 0.0, 0.3)
        ]
        return float(losses[2] - losses[0]) / 2, float(losses[2] + losses[0] - 2 * losses[1])

    slope, curvature = slope_and_curvature()
    assert curvature > 0 and abs(slope) < 0.03 * curvature  # measured 0.003
    original = Denoiser.local_weights
    monkeypatch.setattr(Denoiser, "local_weights", lambda self, x, s, m=20.0: original(self, x0, s, m))
    slope, curvature = slope_and_curvature()
    assert abs(slope) > 0.2 * curvature  # measured 0.35


def test_local_loss_with_unit_weights_is_the_spectral_loss_and_weighs_quiet_cells_up():
    g = torch.Generator().manual_seed(6)
    spectrum = torch.logspace(-3, -6, 17, dtype=torch.float64)
    denoiser = Denoiser(Tilted(0.5), spectrum=spectrum, edge_pad=0)
    x0 = torch.randn(2, 8192, generator=g, dtype=torch.float64) * 0.03
    x0[:, 4096:] *= 0.01  # a loud half, then a quiet one
    taper = torch.hann_window(1024, dtype=torch.float64)
    x0[:, :512] *= taper[:512]
    x0[:, -512:] *= taper[512:]
    noise = torch.randn(2, 8192, generator=g, dtype=torch.float64)
    sigmas = torch.full((2,), 0.01, dtype=torch.float64)
    spectral = denoiser.weighted_error(x0, sigmas, noise)
    unit = denoiser.local_weighted_error(x0, sigmas, noise, max_gain_db=0.0)
    torch.testing.assert_close(unit, spectral, rtol=0.03, atol=0)
    weights = denoiser.local_weights(x0 + 0.01 * noise, sigmas)
    assert weights.shape == (2, 257, 8192 // 128 + 1)
    frames = weights.mean(dim=1)
    assert (frames[:, 40:60].mean() / frames[:, 5:25].mean()) > 10  # the quiet half counts more
    assert torch.allclose(weights.mean(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    assert weights.max() / weights.min() <= 1e4 * (1 + 1e-9)  # ±20 dB around the expected power
    with pytest.raises(ValueError, match="spectral preconditioning"):
        Denoiser(Tilted(0.5)).local_weighted_error(x0, sigmas, noise)


def test_a_loss_spectrum_weighs_the_error_by_its_own_lambda_and_is_the_identity_for_the_same_spectrum():
    g = torch.Generator().manual_seed(7)
    root = torch.logspace(-3, -8, 17, dtype=torch.float64)  # darker highs, as the root statistic
    mean = torch.logspace(-3, -7, 17, dtype=torch.float64)
    denoiser = Denoiser(Tilted(0.5), spectrum=root, edge_pad=0)
    x0 = torch.randn(3, 4096, generator=g, dtype=torch.float64) * 0.03
    noise = torch.randn(3, 4096, generator=g, dtype=torch.float64)
    sigmas = torch.tensor([1e-5, 0.01, 1.0], dtype=torch.float64)
    plain = denoiser.weighted_error(x0, sigmas, noise)
    torch.testing.assert_close(denoiser.weighted_error(x0, sigmas, noise, root), plain)
    # directly: λ_Q(σ, f)·|rfft(D − x0)|², λ_Q = (σ² + Q)/(σ²Q), summed over both sides of the spectrum
    error = torch.fft.rfft(denoiser(x0 + sigmas[:, None] * noise, sigmas) - x0).abs().square()
    q = spectrum_on_grid(mean, 4096)[None]
    weight = (sigmas[:, None] ** 2 + q) / (sigmas[:, None] ** 2 * q)
    expected = (weight * error * rfft_weights(4096, error)).sum(dim=1) / 4096**2
    reweighted = denoiser.weighted_error(x0, sigmas, noise, mean)
    torch.testing.assert_close(reweighted, expected)
    # where σ² is below both spectra the weight is 1/σ² either way; above them the brighter Q weighs less
    assert abs(reweighted[0] / plain[0] - 1) < 0.05 and reweighted[2] < 0.5 * plain[2]
    with pytest.raises(ValueError, match="spectral preconditioning"):
        Denoiser(Tilted(0.5)).loss_reweighting(mean, sigmas, 4096)
