"""A Gaussian prior x ~ N(0, C) with a stationary 1/f spectrum: its exact denoiser and posterior."""

from __future__ import annotations

import torch
from torch import Tensor


class GaussianPrior:
    """Circulant covariance C with power ∝ 1/f, scaled to a per-sample std of ``std``; float64."""

    def __init__(self, length: int = 64, std: float = 0.057) -> None:
        freqs = torch.fft.rfftfreq(length, dtype=torch.float64) * length
        autocov = torch.fft.irfft(1 / freqs.clamp(min=1.0), n=length)
        cov = torch.stack([torch.roll(autocov, i) for i in range(length)])
        self.cov = cov / cov.diag().mean() * std**2
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.cov)
        self.cholesky = torch.linalg.cholesky(self.cov + 1e-12 * torch.eye(length, dtype=torch.float64))
        self.length = length

    def denoiser(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Exact D(x, σ) = C (C + σ² I)⁻¹ x (σ a scalar or one per item)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
        gains = self.eigenvalues / (self.eigenvalues + sigma**2)
        return ((x @ self.eigenvectors) * gains) @ self.eigenvectors.T

    def draw(self, batch: int, generator: torch.Generator) -> Tensor:
        """Samples x ~ N(0, C), shape (batch, length)."""
        # Cholesky, not the eigenvectors: eigh's signs differ between LAPACK builds, and so would the draws.
        white = torch.randn(batch, self.length, generator=generator, dtype=torch.float64)
        return white @ self.cholesky.T

    def posterior(self, observed: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the missing samples given x[observed] = y[observed]."""
        o, m = observed.nonzero().squeeze(1), (~observed).nonzero().squeeze(1)
        c_mo, c_oo = self.cov[m][:, o], self.cov[o][:, o]
        mean = c_mo @ torch.linalg.solve(c_oo, y[o])
        cov = self.cov[m][:, m] - c_mo @ torch.linalg.solve(c_oo, c_mo.T)
        return mean, cov

    def conditional_denoiser(self, observed: Tensor, y: Tensor):
        """Exact E[x₀ | x_σ, x₀[observed] = y[observed]]: the posterior's own denoiser."""
        mean, cov = self.posterior(observed, y)
        m = (~observed).nonzero().squeeze(1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)

        def denoise(x: Tensor, sigma: Tensor | float) -> Tensor:
            sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
            centred = (x[:, m] - mean) @ eigenvectors
            out = y.expand_as(x).clone()
            out[:, m] = mean + (centred * eigenvalues / (eigenvalues + sigma**2)) @ eigenvectors.T
            return out

        return denoise
