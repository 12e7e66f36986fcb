"""EDM parameterisation, training loss and the stochastic Heun sampler (paper §2.1, eq. 5–6).

The sampler is a plain function of a denoiser ``D(x, sigma)`` and knows nothing about tasks:
conditioning (data consistency, reconstruction guidance) wraps the denoiser instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SIGMA_DATA = 0.057  # standard deviation of the training audio (the paper's MAESTRO figure)

DenoiserFn = Callable[[Tensor, Tensor], Tensor]


def _per_item(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Sigma as a (batch, 1) tensor on x's device and dtype, from a float, a 0-d or a (batch,) tensor."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, 1).expand(x.shape[0], 1)


class Denoiser(nn.Module):
    """D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, ¼ ln σ) — EDM preconditioning (paper eq. 5)."""

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = sigma_data

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma``."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Denoised estimate x̂₀ of audio x (batch, length) at noise level(s) σ (float or (batch,))."""
        sigma = _per_item(sigma, x)
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        return c_skip * x + c_out * self.net(c_in * x, c_noise)


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
) -> Tensor:
    """Training noise levels: ρ-spaced with uniform position (the paper's) or log-normal (EDM's)."""
    if distribution == "rho":
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        return ((hi + u * (lo - hi)) ** rho).float()
    if distribution == "lognormal":
        normal = torch.randn(batch, generator=generator, device=device)
        return (normal * p_std + p_mean).exp().clamp(sigma_min, sigma_max)
    raise ValueError(f"unknown sigma distribution {distribution!r}: use 'rho' or 'lognormal'")


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
        """Per-item weighted loss (batch,) for clean audio x (batch, length) at noise levels σ (batch,)."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        sigma = sigma.to(x).reshape(-1, 1)
        denoised = denoiser(x + sigma * noise, sigma.reshape(-1))
        return (self.weight(sigma) * (denoised - x) ** 2).mean(dim=1)


def karras_schedule(
    steps: int = 35, sigma_min: float = 1e-4, sigma_max: float = 1.0, rho: float = 13.0
) -> Tensor:
    """σ_0 = σ_max > … > σ_{T−1} = σ_min, then σ_T = 0 (Karras et al. eq. 5; T+1 values, float64)."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@dataclass(frozen=True)
class SamplerOptions:
    """The sampling settings: T steps of the ρ schedule over [σ_min, σ_max] and Algorithm 2's churn."""

    steps: int = 35
    sigma_min: float = 1e-4
    sigma_max: float = 1.0
    rho: float = 13.0
    s_churn: float = 5.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or not 2 <= self.steps <= 10_000:
            raise ValueError(f"steps must be an integer from 2 to 10000, got {self.steps!r}")
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
        """Keyword arguments of ``sample_heun``'s stochasticity."""
        return {
            "s_churn": self.s_churn,
            "s_tmin": self.s_tmin,
            "s_tmax": self.s_tmax,
            "s_noise": self.s_noise,
        }


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
    x = noise
    for i in range(steps):
        t_i, t_next = float(sigmas[i]), float(sigmas[i + 1])
        # γ_i = min(S_churn/N, √2 − 1) if t_i ∈ [S_tmin, S_tmax] else 0
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= t_i <= s_tmax else 0.0
        # Sample ε ~ N(0, S_noise² I); t̂_i = t_i + γ_i t_i; x̂_i = x_i + √(t̂_i² − t_i²) ε
        t_hat = t_i + gamma * t_i
        if gamma > 0:
            eps = noise_like(x, generator) * s_noise
            x = x + math.sqrt(t_hat**2 - t_i**2) * eps
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
