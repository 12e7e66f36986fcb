"""Objective quality metrics: log-spectral distance and scale-invariant SDR.

LSD (as used for bandwidth extension since Kuleshov et al. 2017 and in CQT-Diff's tables): STFT with a
2048-sample Hann window and hop 512 (at 22.05 kHz), power spectra P = |X|² floored at 1e-10,
LSD = mean over frames of sqrt(mean over frequency bins of (log10 P_ref − log10 P_est)²). Unitless
(log10 of power, i.e. bels); 0 for identical signals.

Long-term average spectrum (LTAS) in third-octave bands, to compare a prior's unconditional samples
with its data: Welch-style, the one-sided power spectrum of 4096-sample Hann frames (hop 1024, no
padding) averaged over all frames and items, normalised so that its bins sum to the signal's mean
square (a sinusoid of amplitude A puts A²/2 in its band, −3.01 dB for A = 1), summed into base-2
third-octave bands (exact centres f_c = 1000·2^(k/3) Hz, edges f_c·2^(±1/6), the top band cut at
Nyquist) and given in dB (10·log10 of band power, floored at −150 dB). Levels are absolute: no
normalisation, so a distance between two LTAS also measures a difference of overall level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor

LSD_FFT = 2048
LSD_HOP = 512
LSD_FLOOR = 1e-10
LTAS_FFT = 4096
LTAS_HOP = 1024
LTAS_FLOOR = 1e-15  # band power floor (-150 dB)
ONSET_FFT = 1024


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


def lsd_by_band(
    reference: Tensor, estimate: Tensor, edges_hz: Sequence[float], sample_rate: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Where an LSD comes from: per band [edges[k], edges[k+1]) Hz, over all items, frames and bins,
    the mean squared log10 difference and the mean log10 power of reference and estimate, each (bands,).

    The squared differences are those inside ``lsd``'s square root: their bin-weighted mean over bands
    covering 0 Hz to Nyquist is the mean of all of them."""
    ref, est = log_power_spectrogram(reference), log_power_spectrogram(estimate)
    hz = torch.linspace(0, sample_rate / 2, ref.shape[-2], dtype=torch.float64, device=ref.device)
    rows = []
    for lo, hi in zip(edges_hz, edges_hz[1:], strict=False):
        inside = (hz >= lo) & (hz < hi) if hi < sample_rate / 2 else (hz >= lo) & (hz <= hi)
        if not inside.any():
            raise ValueError(f"no STFT bin lies in the band {lo:g}-{hi:g} Hz")
        r, e = ref[..., inside, :], est[..., inside, :]
        rows.append(torch.stack([(r - e).pow(2).mean(), r.mean(), e.mean()]))
    table = torch.stack(rows).double()
    return table[:, 0], table[:, 1], table[:, 2]


def high_band_error_by_loudness(
    reference: Tensor, estimate: Tensor, sample_rate: int, split_hz: float = 3500.0
) -> tuple[float, float]:
    """The level error (dB, estimate over reference) of the band above ``split_hz`` in the quietest and
    the loudest third of the reference's STFT frames (2048/512), averaged over frames and items.
    Diagnoses a prior whose highs do not decay with the notes: a posterior mean should come out darker
    (negative), never brighter, where it cannot predict the band."""
    ref = 10 ** log_power_spectrogram(reference.double())  # (batch, bins, frames), floored
    est = 10 ** log_power_spectrogram(estimate.double())
    bins = torch.fft.rfftfreq(LSD_FFT, 1 / sample_rate) > split_hz
    error = 10 * (est[:, bins].sum(1).log10() - ref[:, bins].sum(1).log10())  # (batch, frames)
    quiet, loud = [], []
    for frame_energy, row in zip(ref.sum(1), error, strict=True):
        low, high = torch.quantile(frame_energy, torch.tensor([1 / 3, 2 / 3], dtype=frame_energy.dtype))
        quiet.append(row[frame_energy < low].mean())
        loud.append(row[frame_energy >= high].mean())
    return float(torch.stack(quiet).mean()), float(torch.stack(loud).mean())


def si_sdr(reference: Tensor, estimate: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale-invariant SDR in dB per item (Le Roux et al. 2019), zero-mean signals (batch, length)."""
    reference = reference - reference.mean(dim=-1, keepdim=True)
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    return 10 * torch.log10(target.pow(2).sum(-1) / ((estimate - target).pow(2).sum(-1) + eps) + eps)


def frame_power(x: Tensor, n_fft: int, hop: int, center: bool = False) -> Tensor:
    """Power per Hann-windowed STFT cell (items, n_fft // 2 + 1, frames) of x (..., length), scaled so
    that white noise of variance s² has expected power s² in every cell."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, center=center, return_complex=True
    )
    return spec.abs().square() / window.square().sum()


def power_spectrum(x: Tensor, n_fft: int = LTAS_FFT, hop: int = LTAS_HOP) -> Tensor:
    """Mean one-sided power per bin (n_fft // 2 + 1,) over frames and items, float64; sums to ~mean square."""
    x = x.reshape(-1, x.shape[-1]).double()
    if x.shape[-1] < n_fft:
        raise ValueError(f"the long-term spectrum needs items of >= {n_fft} samples, got {x.shape[-1]}")
    power = x.new_zeros(n_fft // 2 + 1)
    for chunk in x.split(16):  # bounded memory
        power += frame_power(chunk, n_fft, hop).sum(dim=(0, 2))
    frames = x.shape[0] * (1 + (x.shape[-1] - n_fft) // hop)
    power[1:-1] *= 2  # one-sided: negative frequencies folded in (not DC and Nyquist)
    return power / (frames * n_fft)


def third_octave_centres(low: float = 100.0, high: float = 10000.0) -> Tensor:
    """Exact base-2 centres 1000·2^(k/3) Hz of the bands whose nominal centres span [low, high] (float64)."""
    first, last = (round(3 * math.log2(hz / 1000)) for hz in (low, high))
    return 1000 * 2 ** (torch.arange(first, last + 1, dtype=torch.float64) / 3)


def band_levels(power: Tensor, sample_rate: int, centres: Tensor) -> Tensor:
    """Power of ``power_spectrum`` bins summed in each band [f_c·2^(−1/6), f_c·2^(1/6)), in dB."""
    bin_hz = torch.linspace(0, sample_rate / 2, len(power), dtype=torch.float64, device=power.device)
    lower, upper = centres * 2 ** (-1 / 6), centres * 2 ** (1 / 6)
    inside = (bin_hz[None] >= lower[:, None]) & (bin_hz[None] < upper[:, None])
    return 10 * (inside.double() @ power.double()).clamp_min(LTAS_FLOOR).log10()


def third_octave_ltas(
    x: Tensor, sample_rate: int, low: float = 100.0, high: float = 10000.0
) -> tuple[Tensor, Tensor]:
    """(band centres in Hz, band levels in dB) of the long-term average spectrum of x (..., length)."""
    if not 0 < low <= high < sample_rate / 2:
        raise ValueError(f"need 0 < low <= high < Nyquist ({sample_rate / 2:g} Hz), got {low:g}, {high:g}")
    centres = third_octave_centres(low, high)
    return centres, band_levels(power_spectrum(x), sample_rate, centres)


def ltas_distance(a_db: Tensor, b_db: Tensor, level_normalised: bool = False) -> float:
    """RMS over bands of the dB difference; ``level_normalised`` first removes its mean (overall level)."""
    diff = torch.as_tensor(a_db, dtype=torch.float64) - torch.as_tensor(b_db, dtype=torch.float64)
    if level_normalised:
        diff = diff - diff.mean()
    return float(diff.pow(2).mean().sqrt())


def onset_times(x: Tensor, sample_rate: int, threshold: float = 6.0) -> list[float]:
    """Note onsets of one signal (length,) in seconds, by spectral flux: the half-wave rectified rise of
    log power (STFT 1024/256 Hann, 30 Hz–8 kHz, floored 80 dB below the loudest bin), summed over bins;
    an onset is a local maximum within ±50 ms that exceeds the flux's running median (±0.5 s) by
    ``threshold`` times its median absolute deviation, by a fifth of that median, and by half a decibel
    per bin (so the ripple of a lone decaying tone is none). For counting notes
    in unconditional samples beside real music (stationary noise has next to none), not for
    transcription."""
    signal = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    n_fft, hop = ONSET_FFT, ONSET_FFT // 4
    if signal.numel() < 2 * n_fft:
        return []
    window = torch.hann_window(n_fft, dtype=torch.float64)
    power = torch.stft(signal, n_fft, hop, window=window, center=False, return_complex=True).abs().square()
    freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate, dtype=torch.float64)
    power = power[(freqs >= 30) & (freqs <= 8000)]
    log_power = power.clamp_min(power.max() * 1e-8 + 1e-30).log10()
    flux = torch.diff(log_power, dim=1).clamp_min(0).sum(dim=0).numpy()
    half = max(1, round(0.5 * sample_rate / hop))
    local = np.median(sliding_window_view(np.pad(flux, half, mode="reflect"), 2 * half + 1), axis=1)
    reach = max(1, round(0.05 * sample_rate / hop))
    peak = np.max(sliding_window_view(np.pad(flux, reach, constant_values=-np.inf), 2 * reach + 1), axis=1)
    spread = np.median(np.abs(flux - np.median(flux))) + 1e-12
    least = 0.05 * len(log_power)  # a rise of half a decibel in every bin, on average
    rise = flux - local
    onsets = (rise > np.maximum(np.maximum(threshold * spread, 0.2 * local), least)) & (flux == peak)
    return [((i + 1) * hop + n_fft / 2) / sample_rate for i in np.flatnonzero(onsets)]  # later frame's centre
