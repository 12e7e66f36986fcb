"""EDM parameterisation, training loss and the samplers (paper §2.1, eq. 5–6).

Two solvers of the probability-flow ODE, each a plain function of a denoiser ``D(x, sigma)`` that knows
nothing about tasks (conditioning wraps the denoiser instead): the stochastic 2nd-order Heun sampler
(Karras et al. Algorithm 2; 2T − 1 evaluations) and DPM-Solver++(2M) (Lu et al. 2022; a multistep
2nd-order solver in log-σ, one evaluation per step), both with Algorithm 2's churn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cqtrestore.metrics import frame_power

SIGMA_DATA = 0.057  # standard deviation of the training audio (the paper's MAESTRO figure)
# Samples of reflection added at each end before the spectral filters, so that they act as linear (not
# circular) filters on a window: longer than their impulse responses (P is smooth over 1/1024 of the rate).
EDGE_PAD = 2048
# The local loss weighting (``Denoiser.local_weighted_error``): STFT cells of 23 ms at 22.05 kHz, hop a
# quarter of that, and the weight of a cell at most 20 dB above or below the average.
LOCAL_FFT, LOCAL_HOP = 512, 128
LOCAL_MAX_GAIN_DB = 20.0

DenoiserFn = Callable[[Tensor, Tensor], Tensor]


def _per_item(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Sigma as a (batch, 1) tensor on x's device and dtype, from a float, a 0-d or a (batch,) tensor."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1).expand(x.shape[0], 1)


class Denoiser(nn.Module):
    """D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, ¼ ln σ) — EDM preconditioning (paper eq. 5).

    With a data ``spectrum`` (power on a uniform grid from 0 Hz to Nyquist) the three scalings become
    per-frequency gains, applied as zero-phase filters: EDM's formulas with σ_data² replaced by the
    spectrum's P(f) (see ``spectral_scalings``). A constant spectrum σ_data² is the scalar case; a zero
    network is then the (Wiener) denoiser of a stationary Gaussian process with that spectrum. The
    filters see the window extended by ``edge_pad`` reflected samples at each end, so the jump between
    a window's last and first sample does not leak into its edges (training crops are faded instead).
    """

    def __init__(
        self,
        net: nn.Module,
        sigma_data: float = SIGMA_DATA,
        spectrum: Sequence[float] | Tensor | None = None,
        edge_pad: int = EDGE_PAD,
    ) -> None:
        super().__init__()
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        if edge_pad < 0:
            raise ValueError(f"edge_pad must be >= 0, got {edge_pad}")
        self.net = net
        self.sigma_data = sigma_data
        self.edge_pad = int(edge_pad)
        self.spectrum = None if spectrum is None else check_spectrum(spectrum)
        self._grids: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma``."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def power(self, length: int, like: Tensor) -> Tensor:
        """The data spectrum P(f) on the rfft bins of ``length`` samples, (1, length // 2 + 1)."""
        key = (length, like.dtype, like.device)
        if key not in self._grids:
            with torch.inference_mode(False):  # a cache made under inference mode could not serve autograd
                self._grids[key] = spectrum_on_grid(self.spectrum, length).to(like)[None]
        return self._grids[key]

    def spectral_scalings(self, sigma: Tensor, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per-frequency (c_skip, c_out, c_in), each (batch, length // 2 + 1): σ_data² -> P(f)."""
        power = self.power(length, sigma)
        total = power + sigma**2
        return power / total, sigma * power.sqrt() / total.sqrt(), 1 / total.sqrt()

    def _spectral_parts(
        self, x: Tensor, sigma: Tensor, pad: int = 0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """rfft of x, rfft of F(c_in * x, c_noise), and the per-frequency c_skip and c_out, all on x
        extended by ``pad`` reflected samples at each end (the network itself sees only x's span)."""
        length = x.shape[-1]
        c_skip, c_out, c_in = self.spectral_scalings(sigma, length + 2 * pad)
        spectrum = torch.fft.rfft(_reflect(x, pad))
        inner = torch.fft.irfft(spectrum * c_in, n=length + 2 * pad)[:, pad : pad + length]
        output = self.net(inner, sigma.log() / 4).to(x.dtype)
        return spectrum, torch.fft.rfft(_reflect(output, pad)), c_skip, c_out

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Denoised estimate x̂₀ of audio x (batch, length) at noise level(s) σ (float or (batch,))."""
        sigma = _per_item(sigma, x)
        if self.spectrum is None:
            c_skip, c_out, c_in, c_noise = self.scalings(sigma)
            return c_skip * x + c_out * self.net(c_in * x, c_noise)
        length = x.shape[-1]
        pad = min(self.edge_pad, length - 1)
        spectrum, output, c_skip, c_out = self._spectral_parts(x, sigma, pad)
        return torch.fft.irfft(spectrum * c_skip + output * c_out, n=length + 2 * pad)[:, pad : pad + length]

    def gaussian_flow(self, x: Tensor, sigma_from: float, sigma_to: float) -> Tensor:
        """Carry x from σ_from to σ_to along the probability-flow ODE (Karras et al. eq. 1) of the
        Gaussian prior that the preconditioning assumes (F = 0): dx/dσ = σ/(P + σ²)·x per frequency,
        so x(σ_to) = √((P + σ_to²)/(P + σ_from²))·x(σ_from), P = P(f) or σ_data² (Wang & Vastola 2023).
        Circular over the window: meant for stationary noise, e.g. to skip a sampler's first steps."""
        if not (sigma_from > 0 and sigma_to >= 0):
            raise ValueError(f"need sigma_from > 0 and sigma_to >= 0, got {sigma_from}, {sigma_to}")
        length = x.shape[-1]
        power = self.power(length, x) if self.spectrum is not None else x.new_tensor(self.sigma_data**2)
        gain = ((power + sigma_to**2) / (power + sigma_from**2)).sqrt()
        return torch.fft.irfft(torch.fft.rfft(x) * gain, n=length)

    def weighted_error(
        self, x0: Tensor, sigma: Tensor, noise: Tensor, loss_spectrum: Tensor | None = None
    ) -> Tensor:
        """λ-weighted error of denoising x0 + σ·noise, per item (paper eq. 6): ‖F − target‖² per sample.

        Scalar: λ(σ)·mean (D − x0)², λ = 1/c_out². Spectral: the same with λ per frequency, computed
        from the network's output and its target in the frequency domain (Parseval), so that the
        quietest bands keep their precision. ``loss_spectrum``: λ from that spectrum instead of the
        preconditioning's (``loss_reweighting``; the minimiser is the same)."""
        sigma = _per_item(sigma, x0)
        x = x0 + sigma * noise
        if self.spectrum is None:
            denoised = self(x, sigma).to(x0.dtype)
            weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2  # 1 / c_out²
            return (weight * (denoised - x0) ** 2).mean(dim=1)
        spectrum, output, c_skip, c_out = self._spectral_parts(x, sigma)
        target = (torch.fft.rfft(x0) - c_skip * spectrum) / c_out
        error = (output - target).abs() ** 2
        if loss_spectrum is not None:
            error = error * self.loss_reweighting(loss_spectrum, sigma, x0.shape[-1])
        return (error * rfft_weights(x0.shape[-1], error)).sum(dim=1) / x0.shape[-1] ** 2

    def loss_reweighting(self, loss_spectrum: Tensor, sigma: Tensor, length: int) -> Tensor:
        """λ_Q / λ_P = P(σ² + Q) / (Q(σ² + P)) per rfft bin (batch, length // 2 + 1): the loss weight of
        a spectrum Q over that of the preconditioning's P, λ = (σ² + P)/(σ²P) = 1/c_out². With Q the
        mean power and P a darker statistic, the loud highs that P underrates stop dominating the loss."""
        if self.spectrum is None:
            raise ValueError("a loss spectrum needs spectral preconditioning")
        sigma = sigma.reshape(-1, 1)
        power = self.power(length, sigma)
        other = spectrum_on_grid(check_spectrum(loss_spectrum), length).to(sigma)[None]
        return power * (sigma**2 + other) / (other * (sigma**2 + power))

    def local_weighted_error(
        self, x0: Tensor, sigma: Tensor, noise: Tensor, max_gain_db: float = LOCAL_MAX_GAIN_DB
    ) -> Tensor:
        """``weighted_error`` with the λ-weighted error further weighted per time-frequency cell by how
        quiet the noisy input x is there: g = (P(f) + σ²) / S_x(t, f), clipped to ±``max_gain_db``,
        S_x x's smoothed short-time power (``local_weights``). The weight depends on x alone, so
        the minimiser is still the posterior mean E[x₀ | x]; it only moves the network's capacity
        toward the quiet cells (decays, the highs of soft notes) that a log-spectral distance counts
        as much as the loud ones. Spectral preconditioning only."""
        if self.spectrum is None:
            raise ValueError("the local weighting needs spectral preconditioning (a data spectrum)")
        sigma = _per_item(sigma, x0)
        x = x0 + sigma * noise
        spectrum, output, c_skip, c_out = self._spectral_parts(x, sigma)
        target = (torch.fft.rfft(x0) - c_skip * spectrum) / c_out
        length = x0.shape[-1]
        error = torch.fft.irfft(output - target, n=length)  # λ-weighted error, per sample
        window = torch.hann_window(LOCAL_FFT, dtype=x.dtype, device=x.device)
        cells = torch.stft(error, LOCAL_FFT, LOCAL_HOP, window=window, return_complex=True)
        weights = self.local_weights(x.detach(), sigma, max_gain_db)
        # Hann² over hops of a quarter window sums to 3/8 · LOCAL_FFT / LOCAL_HOP = 1.5 per sample:
        # with g = 1 this is mean(error²), the spectral loss above (but for the ends).
        scale = 1.5 * LOCAL_FFT * length
        bins = rfft_weights(LOCAL_FFT, weights)[:, None]
        return (weights * bins * cells.abs().square()).sum(dim=(1, 2)) / scale

    @torch.no_grad()
    def local_weights(self, x: Tensor, sigma: Tensor, max_gain_db: float = LOCAL_MAX_GAIN_DB) -> Tensor:
        """g(t, f) = (P(f) + σ²) / S_x(t, f) on the STFT cells of ``local_weighted_error`` (batch, bins,
        frames), S_x the noisy input's power per cell (3 x 3 cells averaged, in the units of P),
        clipped to 10^(±max_gain_db/10) and normalised to mean 1 per item."""
        sigma = _per_item(sigma, x)
        power = frame_power(x, LOCAL_FFT, LOCAL_HOP, center=True)  # E = P(f) + σ² for stationary noise
        power = F.avg_pool2d(power[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
        expected = self.power(LOCAL_FFT, x)[0][None, :, None] + sigma[:, :, None] ** 2
        limit = 10 ** (max_gain_db / 10)
        gain = (expected / power.clamp_min(1e-30)).clamp(1 / limit, limit)
        return gain / gain.mean(dim=(1, 2), keepdim=True)


def _reflect(x: Tensor, pad: int) -> Tensor:
    """x (batch, length) extended by ``pad`` mirrored samples at each end (edge samples not repeated)."""
    return nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0] if pad else x


class ZeroNetwork(nn.Module):
    """F = 0. Around it a spectral ``Denoiser`` is the data's stationary Gaussian prior (a baseline)."""

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        return torch.zeros_like(x)


def check_spectrum(spectrum: Sequence[float] | Tensor) -> Tensor:
    """A data spectrum as a float64 tensor: at least 2 finite, positive powers from 0 Hz to Nyquist."""
    values = torch.as_tensor(spectrum, dtype=torch.float64).flatten()
    if len(values) < 2 or not bool(torch.isfinite(values).all()) or not bool((values > 0).all()):
        raise ValueError("a data spectrum needs at least 2 finite, positive power values (0 Hz to Nyquist)")
    return values


def spectrum_on_grid(spectrum: Tensor, length: int) -> Tensor:
    """Linear interpolation of log power onto the rfft bins of ``length`` samples (float64)."""
    # Bin k is at k / length of the rate, i.e. 2k / length of Nyquist (odd lengths stop short of it).
    position = torch.arange(length // 2 + 1, dtype=torch.float64) * 2 / length * (len(spectrum) - 1)
    low = position.floor().long().clamp(max=len(spectrum) - 2)
    frac = position - low
    log_power = spectrum.log()
    return (log_power[low] * (1 - frac) + log_power[low + 1] * frac).exp()


def rfft_weights(length: int, like: Tensor) -> Tensor:
    """How often each rfft bin occurs in the full spectrum: 1 for DC (and Nyquist), 2 otherwise."""
    weights = like.new_full((length // 2 + 1,), 2.0)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    return weights


def training_sigmas(
    batch: int,
    distribution: str = "rho",
    sigma_min: float = 1e-6,
    sigma_max: float = 10.0,
    rho: float = 10.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    focus: tuple[float, float] = (1e-4, 0.3),
    focus_share: float = 0.0,
) -> Tensor:
    """Training noise levels: ρ-spaced with uniform position (the paper's) or log-normal (EDM's); with
    ``focus_share`` > 0 that share of the batch is log-uniform in ``focus`` instead (where sampling works)."""
    if distribution == "rho":
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sigma = ((hi + u * (lo - hi)) ** rho).float()
    elif distribution == "lognormal":
        normal = torch.randn(batch, generator=generator, device=device)
        sigma = (normal * p_std + p_mean).exp().clamp(sigma_min, sigma_max)
    else:
        raise ValueError(f"unknown sigma distribution {distribution!r}: use 'rho' or 'lognormal'")
    if focus_share <= 0:  # no further draws: the generator's stream stays as it was before focus existed
        return sigma
    chosen = torch.rand(batch, generator=generator, device=device, dtype=torch.float64) < focus_share
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    focused = (math.log(focus[0]) + u * math.log(focus[1] / focus[0])).exp().float()
    return torch.where(chosen, focused, sigma)


@dataclass(frozen=True)
class EDMLoss:
    """λ(σ)·‖D(x + σn, σ) − x‖² averaged over samples, with λ(σ) = 1/c_out(σ)² (paper eq. 6)."""

    sigma_data: float = SIGMA_DATA

    def weight(self, sigma: Tensor) -> Tensor:
        """Loss weight λ(σ) = (σ² + σ_data²) / (σ·σ_data)²."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def __call__(
        self, denoiser: DenoiserFn, x: Tensor, sigma: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Per-item weighted loss (batch,) for clean audio x (batch, length) at noise levels σ (batch,).

        A ``Denoiser`` weighs its own error (per frequency when it has a data spectrum)."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        sigma = sigma.to(x).reshape(-1, 1)
        if isinstance(denoiser, Denoiser):
            return denoiser.weighted_error(x, sigma.reshape(-1), noise)
        denoised = denoiser(x + sigma * noise, sigma.reshape(-1))
        return (self.weight(sigma) * (denoised - x) ** 2).mean(dim=1)


def karras_schedule(
    steps: int = 35, sigma_min: float = 1e-4, sigma_max: float = 1.0, rho: float = 13.0
) -> Tensor:
    """σ_0 = σ_max > … > σ_{T−1} = σ_min, then σ_T = 0 (Karras et al. eq. 5; T+1 values, float64). T = 1 is
    [σ_max, 0]: one evaluation, the denoiser's posterior mean E[x | x_σmax] (Tweedie)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


SOLVERS = ("heun", "dpmpp2m", "ancestral")


@dataclass(frozen=True)
class SamplerOptions:
    """The sampling settings: a solver, T steps of the ρ schedule over [σ_min, σ_max], Algorithm 2's churn."""

    steps: int = 35
    sigma_min: float = 1e-4
    sigma_max: float = 1.0
    rho: float = 13.0
    s_churn: float = 5.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    solver: str = "heun"  # "heun" (Algorithm 2), "dpmpp2m" (DPM-Solver++(2M)) or "ancestral" (reverse SDE)

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}: use one of {', '.join(SOLVERS)}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or not 1 <= self.steps <= 10_000:
            raise ValueError(f"steps must be an integer from 1 to 10000, got {self.steps!r}")
        if not (math.isfinite(self.sigma_min) and math.isfinite(self.sigma_max)):
            raise ValueError("sigma_min and sigma_max must be finite")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        for name in ("rho", "s_noise"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)!r}")
        if not (math.isfinite(self.s_churn) and self.s_churn >= 0):
            raise ValueError(f"s_churn must be finite and >= 0, got {self.s_churn!r}")

    def sigmas(self) -> Tensor:
        """The T + 1 noise levels σ_0 … σ_T = 0 (Karras et al. eq. 5)."""
        return karras_schedule(self.steps, self.sigma_min, self.sigma_max, self.rho)

    def churn(self) -> dict[str, float]:
        """Keyword arguments of the samplers' stochasticity."""
        return {
            "s_churn": self.s_churn,
            "s_tmin": self.s_tmin,
            "s_tmax": self.s_tmax,
            "s_noise": self.s_noise,
        }

    @property
    def evaluations(self) -> int:
        """Denoiser calls of one run: 2T − 1 for Heun (no correction at σ = 0), else T."""
        return 2 * self.steps - 1 if self.solver == "heun" else self.steps


StepCallback = Callable[[int, Tensor, Tensor, float], None]
Generators = torch.Generator | Sequence[torch.Generator] | None


def noise_like(x: Tensor, generator: Generators = None) -> Tensor:
    """N(0, I) noise shaped like x, from one generator or one per batch item (row i from generator i,
    so an item's noise does not depend on the batch it shares)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
    rows = [torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in generator]
    return torch.stack(rows)


@torch.no_grad()
def sample_heun(
    denoiser: DenoiserFn,
    noise: Tensor,
    sigmas: Tensor,
    s_churn: float = 5.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: Generators = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Stochastic 2nd-order sampler (Karras et al. Algorithm 2); ``noise`` is x_0 ~ N(0, σ_0² I).

    ``generator``: one for the batch, or one per item (see ``noise_like``)."""
    steps = len(sigmas) - 1
    churn = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise}
    x = noise
    for i in range(steps):
        t_i, t_next = float(sigmas[i]), float(sigmas[i + 1])
        # γ_i = min(S_churn/N, √2 − 1) if t_i ∈ [S_tmin, S_tmax] else 0; sample ε ~ N(0, S_noise² I);
        # t̂_i = t_i + γ_i t_i; x̂_i = x_i + √(t̂_i² − t_i²) ε
        x, t_hat = churned(x, t_i, steps, churn, generator)
        # d_i = (x̂_i − D(x̂_i; t̂_i)) / t̂_i; Euler step x_{i+1} = x̂_i + (t_{i+1} − t̂_i) d_i
        denoised = denoiser(x, x.new_tensor(t_hat))
        d = (x - denoised) / t_hat
        x_next = x + (t_next - t_hat) * d
        # If t_{i+1} ≠ 0: 2nd-order correction with d'_i = (x_{i+1} − D(x_{i+1}; t_{i+1})) / t_{i+1}
        if t_next > 0:
            d_prime = (x_next - denoiser(x_next, x.new_tensor(t_next))) / t_next
            x_next = x + (t_next - t_hat) * (d + d_prime) / 2
        x = x_next
        if callback is not None:
            callback(i, x, denoised, t_hat)
    return x


def churned(
    x: Tensor, t_i: float, steps: int, churn: dict[str, float], generator: Generators
) -> tuple[Tensor, float]:
    """Algorithm 2's noise increase: t̂ = t + γt with γ = min(S_churn/N, √2 − 1) inside [S_tmin, S_tmax],
    x̂ = x + √(t̂² − t²)·ε, ε ~ N(0, S_noise² I)."""
    inside = churn["s_tmin"] <= t_i <= churn["s_tmax"]
    gamma = min(churn["s_churn"] / steps, math.sqrt(2) - 1) if inside else 0.0
    t_hat = t_i + gamma * t_i
    if gamma > 0:
        x = x + math.sqrt(t_hat**2 - t_i**2) * (noise_like(x, generator) * churn["s_noise"])
    return x, t_hat


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: DenoiserFn,
    noise: Tensor,
    sigmas: Tensor,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: Generators = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in EDM's σ: one denoiser call per step.

    With λ = −ln σ and h_i = λ_{i+1} − λ̂_i, the step is x_{i+1} = (σ_{i+1}/σ̂_i)·x̂_i + (1 − σ_{i+1}/σ̂_i)·D̃,
    where D̃ = D_i for the first and the last step and otherwise the 2nd-order extrapolation
    D̃ = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, r = h_{i−1}/h_i. Churn (as in Algorithm 2) raises σ_i to σ̂_i first.
    """
    steps = len(sigmas) - 1
    churn = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise}
    x, previous = noise, None  # previous: (D_{i-1}, σ̂_{i-1})
    for i in range(steps):
        t_i, t_next = float(sigmas[i]), float(sigmas[i + 1])
        # Churn: x̂_i at σ̂_i (as Algorithm 2; none when S_churn = 0).
        x, t_hat = churned(x, t_i, steps, churn, generator)
        # D_i = D(x̂_i; σ̂_i); the last step (σ_{i+1} = 0) lands on it.
        denoised = denoiser(x, x.new_tensor(t_hat))
        if t_next == 0:
            x_next = denoised
        else:
            h = math.log(t_hat / t_next)
            estimate = denoised
            if previous is not None and previous[1] > t_hat:
                # 2nd order: D̃ = D_i + (D_i − D_{i−1})/(2r), r = h_{i−1}/h_i (λ between the evaluations).
                r = math.log(previous[1] / t_hat) / h
                estimate = denoised + (denoised - previous[0]) / (2 * r)
            ratio = t_next / t_hat
            x_next = ratio * x + (1 - ratio) * estimate
            previous = (denoised, t_hat)
        x = x_next
        if callback is not None:
            callback(i, x, denoised, t_hat)
    return x


@torch.no_grad()
def sample_ancestral(
    denoiser: DenoiserFn,
    noise: Tensor,
    sigmas: Tensor,
    generator: Generators = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Ancestral sampling of the reverse SDE (DDPM's posterior step, Ho et al. 2020, in EDM's σ): one call
    per step, x_{i+1} = D_i + (σ_{i+1}/σ_i)²·(x_i − D_i) + σ_{i+1}·√(1 − (σ_{i+1}/σ_i)²)·ε, D_i = D(x_i; σ_i).

    It samples p(x₀ | x_{σ_0}), the posterior of its own start (first order in the step). Churn does not:
    it keeps the marginals p_σ but forgets where it started, so from a noisy observation y = x_{σ_0}
    (hiss) it drifts toward the prior (measured on a Gaussian prior: tests/test_diffusion.py)."""
    x = noise
    for i in range(len(sigmas) - 1):
        t_i, t_next = float(sigmas[i]), float(sigmas[i + 1])
        # D_i = D(x_i; σ_i); the last step (σ_{i+1} = 0) lands on it.
        denoised = denoiser(x, x.new_tensor(t_i))
        ratio = (t_next / t_i) ** 2
        # The mean of x_{i+1} given x_i and x₀ = D_i, plus the fresh noise of that conditional.
        x = denoised + ratio * (x - denoised)
        if t_next > 0:
            x = x + t_next * math.sqrt(1 - ratio) * noise_like(x, generator)
        if callback is not None:
            callback(i, x, denoised, t_i)
    return x


def run_sampler(
    denoiser: DenoiserFn,
    x: Tensor,
    options: SamplerOptions,
    generator: Generators = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """The solver ``options`` names, over its schedule, from x ~ σ_0-noisy (pure noise, or a warm start)."""
    sigmas = options.sigmas().to(x.device)
    if options.solver == "ancestral":
        return sample_ancestral(denoiser, x, sigmas, generator=generator, callback=callback)
    solve = sample_heun if options.solver == "heun" else sample_dpmpp_2m
    return solve(denoiser, x, sigmas, generator=generator, callback=callback, **options.churn())


def sample(
    denoiser: DenoiserFn,
    shape: tuple[int, ...],
    steps: int = 35,
    sigma_min: float = 1e-4,
    sigma_max: float = 1.0,
    rho: float = 13.0,
    s_churn: float = 5.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: StepCallback | None = None,
) -> Tensor:
    """Draw x ~ N(0, σ_max² I) and run the Heun sampler over the paper's schedule."""
    sigmas = karras_schedule(steps, sigma_min, sigma_max, rho)
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype) * sigma_max
    return sample_heun(denoiser, noise, sigmas, s_churn=s_churn, generator=generator, callback=callback)
