"""Classical baselines a learned prior must beat: spectral-envelope noise fill (BWE), LPC gap fill and a
short-time Wiener filter (hiss).

- ``noise_fill_bwe``: above the cutoff, Gaussian noise whose per-frame log-magnitude continues the
  straight line (log-magnitude against log-frequency) fitted over the top octave of the passband;
  the observed band is then put back exactly with the low-pass operator's projection.
- ``lpc_inpaint``: autoregressive (linear-prediction, Burg) extrapolation into each gap from both sides,
  forward from the left context and backward from the right, cross-faded with a raised cosine.
- ``wiener_denoise``: a short-time Wiener filter with decision-directed SNR and a given noise spectrum
  (the same estimate the prior gets), floored at -20 dB.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cqtrestore.operators import Gap, LowPass

FILL_FFT = 2048
FILL_HOP = 512
EULER_GAMMA = 0.5772156649015329


def noise_fill_bwe(y: Tensor, operator: LowPass, generator: torch.Generator | None = None) -> Tensor:
    """Bandwidth extension of lowpassed audio y (batch, length) by extrapolated-envelope noise."""
    window = torch.hann_window(FILL_FFT, dtype=y.dtype, device=y.device)
    spec = torch.stft(y, FILL_FFT, FILL_HOP, window=window, return_complex=True)
    freqs = torch.fft.rfftfreq(FILL_FFT, 1 / operator.sample_rate).to(y.dtype)
    # Fit over the passband's top octave, stopping short of the filter's transition band.
    edge = operator.cutoff_hz - max(0.05 * operator.cutoff_hz, 3 * operator.sample_rate / operator.numtaps)
    fit = (freqs >= operator.cutoff_hz / 2) & (freqs < edge)
    missing = freqs >= edge
    # Least-squares line log|X| = a + b·log2 f per frame over the passband's top octave.
    log_f = torch.log2(freqs[fit])
    design = torch.stack([torch.ones_like(log_f), log_f], dim=1)  # (bins, 2)
    log_mag = spec[:, fit].abs().clamp_min(1e-12).log()  # (batch, bins, frames)
    coef = torch.linalg.pinv(design) @ log_mag  # (batch, 2, frames)
    # A rising line (a loud partial at the top of the band, silence under it) would grow without bound
    # over the octaves it is carried: the envelope may stay level, never rise (measured from 1 kHz: output
    # RMS up to 6e8 times the clean's before this).
    coef = torch.cat([coef[:, :1], coef[:, 1:].clamp_max(0.0)], dim=1)
    # Mean log-magnitude of Gaussian noise sits γ/2 (Euler's γ) below its log RMS: add it back.
    line = coef[:, :1] + coef[:, 1:] * torch.log2(freqs[missing])[None, :, None] + EULER_GAMMA / 2
    # Shape the STFT of real white noise (a consistent STFT, unit expected power per bin) by that envelope.
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    noise_spec = torch.stft(noise, FILL_FFT, FILL_HOP, window=window, return_complex=True) / window.norm()
    filled = spec.clone()
    filled[:, missing] = noise_spec[:, missing] * line.exp()
    audio = torch.istft(filled, FILL_FFT, FILL_HOP, window=window, length=y.shape[-1])
    return operator.project(audio, y)


def burg(x: np.ndarray, order: int) -> np.ndarray:
    """AR polynomial [1, a_1, …, a_p] of x by Burg's method: x[n] ≈ −Σ a_k x[n−k]."""
    forward, backward = x[1:].astype(np.float64), x[:-1].astype(np.float64)
    poly = np.array([1.0])
    for _ in range(order):
        energy = np.dot(forward, forward) + np.dot(backward, backward)
        k = -2 * np.dot(forward, backward) / energy if energy > 0 else 0.0
        poly = np.concatenate([poly, [0.0]])
        poly = poly + k * poly[::-1]
        forward, backward = (forward + k * backward)[1:], (backward + k * forward)[:-1]
    return poly


def extrapolate(context: np.ndarray, steps: int, order: int) -> np.ndarray:
    """Continue ``context`` by ``steps`` samples with an AR(order) model fitted to it."""
    order = min(order, len(context) - 1)
    if order < 1 or not np.any(context):
        return np.zeros(steps)
    poly = burg(context, order)
    weights = -poly[:0:-1].copy()  # oldest sample first, so a dot product with the last `order` predicts
    buffer = np.concatenate([context[-order:], np.zeros(steps)])
    for n in range(steps):
        buffer[order + n] = np.dot(weights, buffer[n : order + n])
    return buffer[order:]


def lpc_inpaint(y: Tensor, operator: Gap, order: int = 512, context: int | None = None) -> Tensor:
    """Fill every gap of ``operator`` in y (batch, length) by two-sided AR extrapolation, cross-faded."""
    out = y.detach().cpu().double().numpy().copy()
    for start, end in operator.ranges:
        gap = end - start
        span = context or max(4 * order, 4 * gap)
        fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(gap) + 0.5) / gap)  # 0 → 1 across the gap
        for row in out:
            forward = extrapolate(row[max(0, start - span) : start], gap, order)
            backward = extrapolate(row[end : end + span][::-1], gap, order)[::-1]
            row[start:end] = (1 - fade) * forward + fade * backward
    return torch.from_numpy(out).to(y)


def wiener_denoise(
    y: np.ndarray, density: np.ndarray, sample_rate: int, floor_db: float = -20.0, smoothing: float = 0.98
) -> np.ndarray:
    """Hiss removal a user would reach for: a short-time Wiener filter (2048-point Hann, hop 512) with the
    noise's one-sided density (variance per Hz, on the 1025 rfft bins of 2048 points). Per bin and frame
    the gain ξ/(1 + ξ) of the decision-directed a-priori SNR ξ (Ephraim & Malah 1984: ``smoothing`` of the
    last frame's clean estimate, the rest the maximum-likelihood |Y|²/N − 1), floored at ``floor_db``."""
    y = np.asarray(y, dtype=np.float64)
    window = np.hanning(FILL_FFT + 1)[:FILL_FFT]
    noise_power = density * np.sum(window**2) * sample_rate / 2  # density -> E|N_k|² of a windowed frame
    noise_power = np.maximum(np.concatenate([noise_power[:1] * 2, noise_power[1:]]), 1e-30)
    padded = np.pad(y, (FILL_FFT, FILL_FFT))
    starts = np.arange(0, len(padded) - FILL_FFT + 1, FILL_HOP)
    out, weight = np.zeros_like(padded), np.zeros_like(padded)
    floor = 10 ** (floor_db / 20)
    previous = np.zeros_like(noise_power)  # |X̂|² of the last frame
    for start in starts:
        spectrum = np.fft.rfft(padded[start : start + FILL_FFT] * window)
        posterior = np.abs(spectrum) ** 2 / noise_power
        prior = smoothing * previous / noise_power + (1 - smoothing) * np.maximum(posterior - 1, 0)
        gain = np.maximum(prior / (1 + prior), floor)
        previous = np.abs(gain * spectrum) ** 2
        out[start : start + FILL_FFT] += np.fft.irfft(spectrum * gain, FILL_FFT) * window
        weight[start : start + FILL_FFT] += window**2
    return (out / np.maximum(weight, 1e-12))[FILL_FFT : FILL_FFT + len(y)]
