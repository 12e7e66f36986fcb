"""Restoration of one batch of model-rate segments with the conditioned sampler (windowing comes later)."""

from __future__ import annotations

import torch
from torch import Tensor

from cqtrestore.diffusion import Denoiser, karras_schedule, sample_heun
from cqtrestore.guidance import GuidanceOptions, guided_denoiser
from cqtrestore.operators import Operator


def restore_segments(
    denoiser: Denoiser,
    operator: Operator,
    y: Tensor,
    options: GuidanceOptions | None = None,
    steps: int = 35,
    sigma_min: float = 1e-4,
    sigma_max: float = 1.0,
    rho: float = 13.0,
    s_churn: float = 5.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Posterior samples x̂ with A(x̂) ≈ y for observations y (batch, length) at the model rate."""
    sigmas = karras_schedule(steps, sigma_min, sigma_max, rho)
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device) * sigma_max
    options = options or GuidanceOptions()
    conditioned = guided_denoiser(denoiser, operator, y, options)
    with torch.inference_mode(options.mode == "dc"):
        return sample_heun(conditioned, noise, sigmas, s_churn=s_churn, generator=generator)
