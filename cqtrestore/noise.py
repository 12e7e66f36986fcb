"""Hiss removal with the prior: additive stationary noise y = x + n of a spectrum estimated from the input.

A noisy observation is already a point of the diffusion: with white noise of level σₙ, y is distributed as
x + σₙ·ε, the state the sampler reaches at σ = σₙ. So sampling starts there, from y itself, and runs the
steps below σₙ (no guidance is needed: the prior's posterior given x_σₙ = y is exactly p(x | y)).
Coloured noise n ~ N(0, N(f)) is made white at σ_w, its level at WHITEN_AT_HZ (``Hiss.whiten``): bands
where it is quieter get the missing noise σ_w² − N(f) added, and bands where it is louder are scaled by
g = √((P + σ_w²)/(P + N)), P(f) the prior's power spectrum, so that g·y has the second-order statistics of
x + σ_w·ε there; the sampler's result is scaled by g again. On a Gaussian prior that is the exact
posterior mean. On pink hiss at 20 dB SNR it gains +3.1 dB SI-SDR (topping up to the loudest band with
noise-weighted guidance, which threw away what y knew wherever the hiss is quieter: +0.2 dB; a Wiener
filter: +3.2 dB, with a much worse LSD; docs/benchmarks.md).

The sampler's result x̂ is then the pilot of a second, classical stage (as in two-stage denoisers such as
BM3D): below REFINE_BELOW_HZ, where piano is loud and the hiss's share small, each short-time bin of y is
scaled by the Wiener gain |X̂|²/(|X̂|² + β·E|N|²) that x̂ says it should have (``Hiss.refine``); above it x̂
stays, corrected by what the residual y − x̂ holds beyond the hiss (a spectral subtraction on the residual,
smoothed over 3 × 3 bins): where the prior dulled a bright piano's highs, y still has them. On 8 valid
segments at 20 dB SNR the first part adds +1.8 dB SI-SDR on pink hiss and +0.1 dB on white, at the same
LSD; the residual adds +2.3 and +1.7 dB on the two bright training crops of 12 and ±0.01 dB elsewhere
(docs/benchmarks.md).

The spectrum comes from the quiet moments of each frequency bin of the input (``estimate_noise``: minimum
statistics, bounded by a straight floor in dB per octave that the reliable high bins fix), or from a level
the user gives (``Hiss.white``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor

from cqtrestore.operators import Operator, _check_sample_rate

FRAME = 2048
HOP = 512
QUANTILE = 0.1  # minimum statistics: each bin's 10th-percentile power over the frames, unbiased
MEDIAN_BINS = 31  # then a running median over 31 bins (330 Hz at 22.05 kHz)
WHITE_WITHIN_DB = 6.0  # a noise spectrum flat within this (third octaves, 100 Hz-10 kHz) counts as white
FLOOR_QUANTILE = 0.1  # the floor line: a 10%-quantile regression of the bins' dB on log2 frequency
FLOOR_FROM_HZ = 100.0  # ... over the bins from 100 Hz up (below, the line is held level)
TILTS = np.arange(-90, 41) / 10  # candidate floor slopes, dB per octave (brown noise is -6)
WHITE_TILT_DB = 1.5  # a floor this level (dB/octave; pink is -3) and flat around it is taken as white
WHITEN_AT_HZ = 2000.0  # coloured hiss: sampling starts at the noise's level here (chosen on train crops)
REFINE_BELOW_HZ = 2000.0  # the prior-guided Wiener filter's band (``Hiss.refine``; chosen on valid segments)
REFINE_FFT = 4096  # ... its short-time frames (Hann, hop a quarter)
REFINE_OVERSUBTRACT = 2.0  # ... and β, the noise power's weight in its gain
RESIDUAL_OVERSUBTRACT = 4.0  # above the band: β_r, the hiss power's weight in the residual's gain
RESIDUAL_SMOOTH = 3  # ... whose residual power is averaged over this many bins in frequency and in time


@dataclass(frozen=True)
class NoiseEstimate:
    """A stationary noise spectrum: one-sided density (variance per Hz) on ``freqs`` (Hz), and the SNR."""

    freqs: np.ndarray
    density: np.ndarray
    sample_rate: int
    snr_db: float

    @property
    def rms(self) -> float:
        """The noise's RMS level (linear, full scale 1)."""
        area = np.sum((self.density[1:] + self.density[:-1]) / 2 * np.diff(self.freqs))
        return math.sqrt(float(area))

    @property
    def spread_db(self) -> float:
        """Loudest minus quietest third-octave band level, 100 Hz to 10 kHz (0 for white noise)."""
        levels = _third_octave_levels(self.freqs, self.density)
        return float(levels.max() - levels.min()) if levels.size else 0.0

    @property
    def white(self) -> bool:
        """Flat within WHITE_WITHIN_DB: sampling from y needs no guidance."""
        return self.spread_db <= WHITE_WITHIN_DB

    def describe(self) -> str:
        """One line for the user."""
        kind = "white" if self.white else f"coloured (bands differ by {self.spread_db:.0f} dB)"
        return (
            f"noise at {20 * math.log10(max(self.rms, 1e-12)):.1f} dBFS RMS, SNR {self.snr_db:.1f} dB, {kind}"
        )


def estimate_noise(audio: np.ndarray, sample_rate: int, quantile: float = QUANTILE) -> NoiseEstimate:
    """The noise spectrum of (frames,) or (frames, channels) audio by minimum statistics: per frequency
    bin, the ``quantile`` of its power over the frames (2048-point Hann, hop 512, channels averaged),
    which for noise alone (|N|² exponential) is −ln(1 − q) times its mean, so divided by that; then the
    running median over MEDIAN_BINS bins. Music raises a bin only while a note sounds in it, so the quiet
    moments of each bin give its noise, and the median across frequency drops the bins of partials that
    sound all along (a held chord). Below a few kHz a piano keeps some bins busy all the time, so that
    spectrum is an upper bound there: it is capped by ``noise_floor``'s straight line (dB per octave) fitted
    under it, which the sparse high bins hold at the noise's own level. Music still lifts the line's low
    end a little (measured −0.2 to −1.4 dB/octave for white hiss under piano), so a spectrum whose line
    is within WHITE_TILT_DB per octave of level and flat around it is taken as white, at its mean
    level. The SNR is the whole against it."""
    mono = np.asarray(audio, dtype=np.float64)
    mono = mono.mean(axis=1) if mono.ndim == 2 else mono
    if mono.size < FRAME * 2:
        raise ValueError(
            f"the input is too short to estimate its noise ({mono.size} samples; need {FRAME * 2})"
        )
    if not 0 < quantile < 1:
        raise ValueError(f"noise quantile must lie in (0, 1), got {quantile}")
    window = np.hanning(FRAME + 1)[:FRAME]
    starts = np.arange(0, mono.size - FRAME + 1, HOP)
    power = np.abs(np.fft.rfft(np.stack([mono[s : s + FRAME] for s in starts]) * window, axis=1)) ** 2
    quiet = np.quantile(power, quantile, axis=0) / -math.log(1 - quantile)
    half = MEDIAN_BINS // 2  # a running median over frequency: partials held all along are outliers
    quiet = np.median(sliding_window_view(np.pad(quiet, half, mode="edge"), MEDIAN_BINS), axis=-1)
    scale = 2 / (np.sum(window**2) * sample_rate)  # bin power -> one-sided density (variance per Hz)
    freqs = np.fft.rfftfreq(FRAME, 1 / sample_rate)
    floor, tilt = noise_floor(freqs, quiet)
    quiet = np.minimum(quiet, floor)
    level = quiet / np.maximum(floor, 1e-300)  # what is left once the line's tilt is taken out
    if abs(tilt) <= WHITE_TILT_DB and np.ptp(_third_octave_levels(freqs, level)) <= WHITE_WITHIN_DB:
        quiet = np.full_like(quiet, quiet[1:].mean())
    density = quiet * scale
    density[0] /= 2
    noise, total = float(quiet.sum()), float(power.mean(axis=0).sum())
    snr = 10 * math.log10(max(total - noise, 1e-30) / max(noise, 1e-30))
    return NoiseEstimate(freqs, density, int(sample_rate), snr)


def noise_floor(
    freqs: np.ndarray, power: np.ndarray, quantile: float = FLOOR_QUANTILE
) -> tuple[np.ndarray, float]:
    """(The line on ``freqs``, its slope in dB/octave): the floor under ``power``, a line in dB vs log2 f.

    Level and slope (the slope in TILTS) come from the ``quantile``-regression of ``power`` (> 0, per
    bin) over the bins from FLOOR_FROM_HZ up; the line is held level below. Bins count equally, so
    the many high bins, where noise alone sets the quiet power, fix it, and the low bins that music
    keeps busy lie above it."""
    used = freqs >= FLOOR_FROM_HZ
    octaves, levels = np.log2(freqs[used]), 10 * np.log10(np.maximum(power[used], 1e-300))
    residuals = levels[None] - TILTS[:, None] * octaves[None]  # (tilts, bins)
    offsets = np.quantile(residuals, quantile, axis=1, keepdims=True)
    error = residuals - offsets
    loss = np.where(error >= 0, quantile * error, (quantile - 1) * error).sum(axis=1)  # check loss
    best = int(np.argmin(loss))
    octave = np.log2(np.maximum(freqs, FLOOR_FROM_HZ))
    return 10 ** ((offsets[best, 0] + TILTS[best] * octave) / 10), float(TILTS[best])


class Hiss(Operator):
    """Additive stationary noise of a known spectrum: y = x + n, n ~ N(0, N(f)); A(x) = x (nothing is
    removed: the noise is what the prior takes out). ``strength`` scales the noise's amplitude."""

    has_projection = False

    def __init__(
        self, estimate: NoiseEstimate, sample_rate: int, strength: float = 1.0, refines: bool = True
    ) -> None:
        self.sample_rate, self.refines = _check_sample_rate(sample_rate), bool(refines)
        if not (math.isfinite(strength) and strength > 0):
            raise ValueError(f"noise strength must be a number > 0, got {strength!r}")
        if not np.all(np.isfinite(estimate.density)) or np.any(estimate.density < 0):
            raise ValueError("the noise spectrum must be finite and non-negative")
        self.estimate, self.strength = estimate, float(strength)
        self._cache: dict[tuple, Tensor] = {}

    @classmethod
    def white(cls, level_db: float, sample_rate: int) -> Hiss:
        """White noise at ``level_db`` dBFS RMS (for example −50), as ``--noise-level`` gives it."""
        if not (math.isfinite(level_db) and level_db < 0):
            raise ValueError(f"noise level must be a negative number of dBFS, got {level_db!r}")
        variance = 10 ** (level_db / 10)
        freqs = np.array([0.0, sample_rate / 2])
        density = np.full(2, variance / (sample_rate / 2))
        return cls(NoiseEstimate(freqs, density, sample_rate, math.nan), sample_rate)

    def __call__(self, x: Tensor) -> Tensor:
        """A(x) = x: the noise is not part of the operator, only of the observation."""
        return x

    def at_rate(self, sample_rate: int) -> Hiss:
        """The same noise density (per Hz) seen at another rate."""
        if sample_rate == self.sample_rate:
            return self
        return Hiss(self.estimate, sample_rate, self.strength, self.refines)

    def scaled(self, gain: float) -> Hiss:
        """The noise of ``gain * y``."""
        return Hiss(self.estimate, self.sample_rate, self.strength * abs(gain), self.refines)

    def _settings(self) -> object:
        return (id(self.estimate), self.sample_rate, self.strength, self.refines)

    def bin_variance(self, length: int, like: Tensor, n_fft: int | None = None) -> Tensor:
        """E|N_k|² of the noise's unnormalised rfft over ``length`` samples, (n_fft // 2 + 1,) on the bins
        of ``n_fft`` points (default ``length``; larger: the window zero-padded)."""
        n_fft = length if n_fft is None else n_fft
        key = (length, n_fft, like.dtype, like.device)
        if key not in self._cache:
            freqs = np.fft.rfftfreq(n_fft, 1 / self.sample_rate)
            density = np.interp(freqs, self.estimate.freqs, self.estimate.density)
            variance = length * density * self.sample_rate / 2 * self.strength**2
            self._cache[key] = torch.as_tensor(variance, dtype=like.dtype, device=like.device)
        return self._cache[key]

    def start_sigma(self, length: int, like: Tensor) -> float:
        """σ_w, the white level sampling starts at: the noise's level at WHITEN_AT_HZ (its own level if
        white), within the levels its bands reach."""
        variance = self.bin_variance(length, like) / length  # per sample, comparable to σ²
        freqs = np.fft.rfftfreq(length, 1 / self.sample_rate)
        at = float(np.interp(WHITEN_AT_HZ, freqs, variance.detach().cpu().double().numpy()))
        return math.sqrt(min(max(at, float(variance.min())), float(variance.max())))

    def whitening(self, length: int, power: Tensor, like: Tensor) -> Tensor:
        """Per rfft bin, g = √((P + σ_w²)/(P + N)) where the noise N(f) is above σ_w² (else 1), P(f) the
        prior's power spectrum (per sample, (length // 2 + 1,)): g·y there has the second-order statistics
        of x + σ_w·ε, and g times the denoised estimate of g·y is the Gaussian posterior mean of x."""
        noise = self.bin_variance(length, like) / length
        level = self.start_sigma(length, like) ** 2
        power = power.to(noise).expand_as(noise)
        louder = noise > level * (1 + 1e-9)
        return torch.where(louder, ((power + level) / (power + noise)).sqrt(), torch.ones_like(noise))

    def starts_from_y(self, length: int, like: Tensor) -> bool:
        """Whether ``whiten`` leaves y as it is (the noise at σ_w in every bin, as ``--noise-level`` gives
        it): then sampling adds no noise of its own, and an ODE solver's draws are all the same."""
        noise = self.bin_variance(length, like) / length
        level = self.start_sigma(length, like) ** 2
        return bool(((noise - level).abs() <= level * 1e-9).all())

    def whiten(self, y: Tensor, white: Tensor, power: Tensor) -> tuple[Tensor, Tensor]:
        """(x at σ_w, g): y made a point of the diffusion at σ_w = ``start_sigma``. Bands where the noise is
        quieter than σ_w get ``white`` N(0, I) noise shaped to σ_w² − N(f) added; louder bands are scaled by
        g (``whitening``). White hiss: y itself. The restored x is g times the sampler's result."""
        length = y.shape[-1]
        gain = self.whitening(length, power, y)
        if self.starts_from_y(length, y):
            return y.clone(), gain  # white: y is already the state at σ_w (gain 1 everywhere)
        level = self.start_sigma(length, y) ** 2
        missing = (level - self.bin_variance(length, y) / length).clamp_min(0)
        missing = torch.where(missing > level * 1e-9, missing, torch.zeros_like(missing))
        spectrum = torch.fft.rfft(y) * gain + torch.fft.rfft(white) * missing.sqrt()
        return torch.fft.irfft(spectrum, length), gain

    def refine(self, y: Tensor, x_hat: Tensor) -> Tensor:
        """The prior-guided Wiener filter: below REFINE_BELOW_HZ each short-time bin of y (batch, length)
        times |X̂|²/(|X̂|² + β·E|N|²), the gain that the pilot x̂ (the sampler's result) implies; above it x̂
        plus the residual R = Y − X̂ times max(0, 1 − β_r·E|N|²/⟨|R|²⟩), ⟨·⟩ a 3 × 3-bin mean: what y holds
        beyond the hiss and the pilot missed. x̂ as it is where ``refines`` is off."""
        if not self.refines:
            return x_hat
        length = y.shape[-1]
        n_fft = min(REFINE_FFT, 1 << (length.bit_length() - 1))
        hop, window = n_fft // 4, torch.hann_window(n_fft, dtype=y.dtype, device=y.device)

        def stft(signal: Tensor) -> Tensor:
            return torch.stft(signal, n_fft, hop, window=window, pad_mode="constant", return_complex=True)

        spectrum, pilot = stft(y), stft(x_hat.to(y))
        noise = self.bin_variance(n_fft, y) / n_fft * window.square().sum()  # E|N_k|² of a windowed frame
        power = pilot.abs().square()
        denominator = power + REFINE_OVERSUBTRACT * noise[:, None]
        safe = denominator.clamp_min(torch.finfo(y.dtype).tiny)
        gain = torch.where(denominator > 0, power / safe, torch.ones_like(power))
        freqs = torch.fft.rfftfreq(n_fft, 1 / self.sample_rate, dtype=y.dtype, device=y.device)
        low = (freqs < REFINE_BELOW_HZ)[:, None]
        residual = spectrum - pilot
        out = torch.where(low, spectrum * gain, pilot + self._residual_gain(residual, noise) * residual)
        return torch.istft(out, n_fft, hop, window=window, length=length).to(x_hat.dtype)

    @staticmethod
    def _residual_gain(residual: Tensor, noise: Tensor) -> Tensor:
        """max(0, 1 − β_r·E|N|²/⟨|R|²⟩) per short-time bin of the residual (batch, bins, frames), ⟨·⟩ its
        power's mean over RESIDUAL_SMOOTH bins in frequency and in time (spectral subtraction)."""
        power = residual.abs().square()
        pad = RESIDUAL_SMOOTH // 2
        mean = torch.nn.functional.avg_pool2d(power, RESIDUAL_SMOOTH, 1, pad, count_include_pad=False)
        safe = mean.clamp_min(torch.finfo(mean.dtype).tiny)
        return (1 - RESIDUAL_OVERSUBTRACT * noise[:, None] / safe).clamp_min(0)

    def noise(self, white: Tensor) -> Tensor:
        """``white`` N(0, I) noise (batch, length) shaped to this spectrum: a draw of n."""
        length = white.shape[-1]
        variance = self.bin_variance(length, white)
        return torch.fft.irfft(torch.fft.rfft(white) * (variance / length).sqrt(), length)

    def residual(self, y: Tensor, x_hat: Tensor) -> Tensor:
        """(y − x̂) whitened by the noise spectrum (scaled so that white noise leaves it unchanged): the
        misfit whose squared norm is the likelihood's."""
        length = y.shape[-1]
        variance = self.bin_variance(length, y)
        weight = (variance.max() / variance.clamp_min(variance.max() * 1e-6)).sqrt()
        return torch.fft.irfft(torch.fft.rfft(y - x_hat) * weight, length)

    @property
    def white_noise(self) -> bool:
        """Whether the spectrum counts as white (then no guidance is needed)."""
        return self.estimate.white

    def describe(self) -> str:
        """One line, e.g. "hiss (noise at -52.0 dBFS RMS, SNR 23.1 dB, white)"."""
        scale = f", strength {self.strength:g}" if self.strength != 1 else ""
        return f"hiss ({self.estimate.describe()}{scale})"


def _third_octave_levels(freqs: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Mean level in dB of each third-octave band from 100 Hz to 10 kHz that holds a bin."""
    edges = 100 * 2 ** (np.arange(0, 21) / 3)  # 100 Hz to 10.2 kHz
    levels = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (freqs >= low) & (freqs < high)
        if inside.any():
            levels.append(10 * np.log10(max(float(np.mean(density[inside])), 1e-30)))
        elif low < freqs[-1]:
            levels.append(10 * np.log10(max(float(np.interp(math.sqrt(low * high), freqs, density)), 1e-30)))
    return np.array(levels)
