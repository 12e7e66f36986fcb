"""Automatic estimates from damaged audio: lowpass cutoff, clipping level and digital-silence dropouts.

They back ``--cutoff auto``, ``--threshold auto`` and ``--gap auto``. Audio is a float numpy array of
shape (frames,) or (frames, channels). Each estimator returns ``None`` (or an empty list) when it finds
nothing, so the caller can say so. Ground floor: numpy only, imports nothing from cqtrestore.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WELCH_FFT = 4096
WELCH_CHUNK = 64  # segments transformed at a time
MIN_SAMPLES = 256
SPECTRUM_FLOOR_DB = -150.0  # relative to the loudest bin: digital zeros do not make infinite drops
SILENCE_LEVEL = 1e-7
CLIP_TOLERANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # relative to the extreme, tried in turn
PASSBAND_HZ = 300.0  # width of the passband window just below a candidate cutoff
ENVELOPE_HZ = 100.0  # width of the lower envelope (25th percentile) that locates the edge between peaks
EDGE_DB = 10.0  # the edge: where the lower envelope falls this far below its passband level


@dataclass(frozen=True)
class CutoffEstimate:
    """A lowpass cutoff found in the long-term spectrum: the level falls by ``drop_db`` above ``hz``."""

    hz: float
    drop_db: float
    passband_db: float
    floor_db: float
    stopband_hz: float  # where the floor was measured from: above it the spectrum is only floor

    def describe(self) -> str:
        """One line for the user."""
        return f"cutoff at {self.hz:.0f} Hz (the spectrum drops by {self.drop_db:.0f} dB above it)"


@dataclass(frozen=True)
class ClipEstimate:
    """The clipping level of a clipped recording; ``threshold`` is the smaller of the clipped sides."""

    threshold: float
    positive: float | None
    negative: float | None
    fraction_clipped: float

    def describe(self) -> str:
        """One line for the user."""
        return f"clipped at |x| = {self.threshold:.4g} ({100 * self.fraction_clipped:.2f}% of samples)"


def estimate_cutoff(
    audio: np.ndarray,
    sample_rate: int,
    min_drop_db: float = 40.0,
    transition_hz: float = 500.0,
    max_fraction: float = 0.9,
) -> CutoffEstimate | None:
    """The frequency above which the spectrum falls to its floor, or None for full-band audio.

    From the Welch average (4096-point Hann, half overlap, channels averaged) in dB. Drop at bin k: the
    median level over the 300 Hz just below k minus the loudest level (300 Hz running median) anywhere
    above k + ``transition_hz``; the steepest drop must reach ``min_drop_db``. Its edge is the last
    frequency where the lower envelope (25th percentile over 100 Hz, which skips tonal peaks) stays above
    an edge level: 10 dB under the passband's quiet level (its 10th percentile) or, if lower, halfway
    down the drop, yet 10 dB over the floor. Brick walls come out within a few bins; FIR lowpasses a
    little high, inside the upper half of their transition band (about +60 Hz for a 501-tap Kaiser FIR
    at 22.05 kHz). Cutoffs above ``max_fraction`` of Nyquist are ignored: resamplers put one there.
    """
    if sample_rate <= 0 or min_drop_db <= 0 or transition_hz <= 0 or not 0 < max_fraction <= 1:
        raise ValueError(
            "estimate_cutoff needs sample_rate, min_drop_db, transition_hz > 0, max_fraction in (0, 1]"
        )
    freqs, level = _welch_db(_as_frames(audio), sample_rate)
    bin_hz = float(freqs[1])
    window = max(8, int(round(PASSBAND_HZ / bin_hz)))
    transition = max(1, int(round(transition_hz / bin_hz)))
    lowest = window + window // 2
    highest = min(int(max_fraction * (len(freqs) - 1)), len(freqs) - 1 - transition - window)
    if highest <= lowest:
        return None
    smooth = _running_percentile(level, window)
    above = np.maximum.accumulate(smooth[::-1])[::-1]  # loudest smoothed level at or above each bin
    below = np.median(sliding_window_view(level, window), axis=-1)  # below[i]: bins i .. i+window-1
    candidates = np.arange(lowest, highest + 1)
    drops = below[candidates - window] - above[candidates + transition]
    best = int(np.argmax(drops))
    if drops[best] < min_drop_db:
        return None
    k = int(candidates[best])
    passband, floor = float(below[k - window]), float(above[k + transition])
    quiet = float(np.percentile(level[k - window - window // 2 : k - window // 2], 10.0))
    edge_db = max(floor + EDGE_DB, min(quiet - EDGE_DB, (passband + floor) / 2))
    hz = _edge_hz(level, edge_db, k - window, k + transition, bin_hz)
    stopband_hz = float(freqs[k + transition])
    return CutoffEstimate(
        hz=hz, drop_db=float(drops[best]), passband_db=passband, floor_db=floor, stopband_hz=stopband_hz
    )


def detect_clipping(
    audio: np.ndarray, min_fraction: float = 1e-3, min_ratio: float = 8.0
) -> ClipEstimate | None:
    """The clipping level of an already clipped recording, or None when it does not look clipped.

    A side (positive or negative) is clipped when at least ``min_fraction`` of all samples sit within a
    tolerance of its extreme value and they outnumber, ``min_ratio`` times over, the samples in the next
    band below (twice as wide); tolerances from 0.01% to 3% of the extreme are tried, so dither and
    small DC offsets do not hide the plateau. A clean sine scores a ratio of about 1.4, noise less.
    """
    samples = _as_frames(audio).ravel()
    if samples.size == 0:
        return None
    positive = _clipped_level(samples, min_fraction, min_ratio)
    negative = _clipped_level(-samples, min_fraction, min_ratio)
    levels = [side[0] for side in (positive, negative) if side is not None]
    if not levels:
        return None
    clipped = sum(side[1] for side in (positive, negative) if side is not None)
    return ClipEstimate(
        threshold=min(levels),
        positive=None if positive is None else positive[0],
        negative=None if negative is None else negative[0],
        fraction_clipped=clipped / samples.size,
    )


def find_dropouts(
    audio: np.ndarray, sample_rate: int, min_duration: float = 0.02, level: float = SILENCE_LEVEL
) -> list[tuple[float, float]]:
    """Runs of digital silence (|x| < ``level`` on every channel) of at least ``min_duration`` seconds
    inside the audio, as (start, end) in seconds; silence at the very start or end is not a dropout."""
    if min_duration <= 0:
        raise ValueError(f"the minimum dropout duration must be positive, got {min_duration}")
    silent = np.all(np.abs(_as_frames(audio)) < level, axis=1)
    edges = np.diff(silent.astype(np.int8), prepend=0, append=0)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    min_frames = max(1, int(np.ceil(min_duration * sample_rate - 1e-9)))
    return [
        (float(start / sample_rate), float(end / sample_rate))
        for start, end in zip(starts, ends, strict=True)
        if start > 0 and end < silent.size and end - start >= min_frames
    ]


def _as_frames(audio: np.ndarray) -> np.ndarray:
    """Float64 audio of shape (frames, channels)."""
    frames = np.asarray(audio, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.ndim != 2:
        raise ValueError(f"audio must have shape (frames,) or (frames, channels), got {frames.shape}")
    if not np.all(np.isfinite(frames)):
        raise ValueError("audio contains NaN or infinite samples")
    return frames


def _welch_db(frames: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin frequencies and the Welch power spectrum in dB relative to its loudest bin."""
    if frames.shape[0] < MIN_SAMPLES:
        raise ValueError(
            f"audio too short to estimate a cutoff: {frames.shape[0]} samples, need {MIN_SAMPLES}"
        )
    n_fft = min(WELCH_FFT, 1 << (frames.shape[0].bit_length() - 1))
    segments = sliding_window_view(frames, n_fft, axis=0)[:: n_fft // 2]  # (segments, channels, n_fft)
    window, power = np.hanning(n_fft), np.zeros(n_fft // 2 + 1)
    for first in range(0, len(segments), WELCH_CHUNK):  # bounded memory on long files
        spectra = np.fft.rfft(segments[first : first + WELCH_CHUNK] * window, axis=-1)
        power += np.sum(spectra.real**2 + spectra.imag**2, axis=(0, 1))
    peak = power.max()
    if peak <= 0:
        return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), np.full(power.shape, SPECTRUM_FLOOR_DB)
    level = 10 * np.log10(np.maximum(power / peak, 10 ** (SPECTRUM_FLOOR_DB / 10)))
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), level


def _running_percentile(values: np.ndarray, width: int, percent: float = 50.0) -> np.ndarray:
    """A percentile over ``width`` bins centred on each bin (edges padded with the end values)."""
    padded = np.pad(values, (width // 2, width - 1 - width // 2), mode="edge")
    return np.percentile(sliding_window_view(padded, width), percent, axis=-1)


def _edge_hz(level: np.ndarray, threshold_db: float, lo: int, hi: int, bin_hz: float) -> float:
    """Where the lower envelope of ``level`` last falls below ``threshold_db`` in bins [lo, hi]."""
    smooth = _running_percentile(level, max(3, int(round(ENVELOPE_HZ / bin_hz))), 25.0)
    loud = np.flatnonzero(smooth[lo : hi + 1] >= threshold_db)
    k = lo + (int(loud[-1]) if loud.size else 0)
    if not loud.size or k + 1 >= smooth.size or smooth[k + 1] >= threshold_db:
        return float(k * bin_hz)
    step = (smooth[k] - threshold_db) / (smooth[k] - smooth[k + 1])
    return float((k + step) * bin_hz)


def _clipped_level(values: np.ndarray, min_fraction: float, min_ratio: float) -> tuple[float, int] | None:
    """(level, count) of the clipped plateau at the top of ``values``, or None."""
    peak = float(values.max())
    if peak <= 0:
        return None
    needed = max(2, int(np.ceil(min_fraction * values.size)))
    for relative in CLIP_TOLERANCES:
        top = values >= peak * (1 - relative)
        count = int(np.count_nonzero(top))
        if count < needed or count == values.size:
            continue
        rest = values[~top]
        # the band below is at least two quantisation steps wide, so coarse steps do not fake a plateau
        width = 2 * max(relative * peak, float(values[top].min() - rest.max()))
        below = int(np.count_nonzero(rest >= peak * (1 - relative) - width))
        if count >= min_ratio * max(below, 1):
            return float(np.median(values[top])), count
    return None
