"""Objective quality metrics: log-spectral distance and scale-invariant SDR.

LSD (as used for bandwidth extension since Kuleshov et al. 2017 and in CQT-Diff's tables): STFT with a
2048-sample Hann window and hop 512 (at 22.05 kHz), power spectra P = |X|² floored at 1e-10,
LSD = mean over frames of sqrt(mean over frequency bins of (log10 P_ref − log10 P_est)²). Unitless
(log10 of power, i.e. bels); 0 for identical signals.
"""

from __future__ import annotations

import torch
from torch import Tensor

LSD_FFT = 2048
LSD_HOP = 512
LSD_FLOOR = 1e-10


def log_power_spectrogram(x: Tensor, n_fft: int = LSD_FFT, hop: int = LSD_HOP) -> Tensor:
    """log10 of the floored STFT power, (batch, bins, frames)."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
    return spec.abs().pow(2).clamp_min(LSD_FLOOR).log10()


def lsd(reference: Tensor, estimate: Tensor, band: tuple[int, int] | None = None) -> Tensor:
    """Log-spectral distance per item (batch,); ``band`` limits it to STFT bins [lo, hi)."""
    diff = log_power_spectrogram(reference) - log_power_spectrogram(estimate)
    if band is not None:
        diff = diff[:, band[0] : band[1]]
    return diff.pow(2).mean(dim=1).sqrt().mean(dim=1)


def si_sdr(reference: Tensor, estimate: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale-invariant SDR in dB per item (Le Roux et al. 2019), zero-mean signals (batch, length)."""
    reference = reference - reference.mean(dim=-1, keepdim=True)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    return 10 * torch.log10(target.pow(2).sum(-1) / ((estimate - target).pow(2).sum(-1) + eps) + eps)
