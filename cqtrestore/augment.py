"""Timbre and room augmentation of training crops: random EQ tilt, microphone-like responses, rooms.

Users' pianos are uprights, grands and old recordings in rooms the corpus never had. Each crop is read
with ``preroll`` samples of context before it, filtered in the frequency domain by a random
microphone-like magnitude response (a tilt around 1 kHz, a few broad bumps and dips in log-frequency,
sometimes a low cut) and, with some probability, convolved with a synthetic room impulse response
(exponentially decaying noise whose highs die faster, after a short pre-delay), mixed with the dry
signal at a random ratio. The crop keeps its RMS: level is the crop reader's own augmentation. Every
draw comes from the generator it is given, so augmented crops stay a function of (seed, step, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """The random ranges of ``augment_crop``; ``Augmentation.off()`` changes nothing."""

    tilt_db_per_octave: float = 1.5  # EQ tilt around 1 kHz drawn from U(-t, t)
    bumps: int = 3  # up to this many bumps and dips of the microphone-like response
    bump_db: float = 5.0  # their gains drawn from U(-g, g)
    low_cut_probability: float = 0.3  # a 2nd-order low cut at 40-150 Hz
    room_probability: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 1.2)  # reverberation time (low frequencies)
    wet: tuple[float, float] = (0.05, 0.6)  # reverberant to direct energy ratio

    def __post_init__(self) -> None:
        if self.tilt_db_per_octave < 0 or self.bumps < 0 or self.bump_db < 0:
            raise ValueError("tilt, bump count and bump gain must be >= 0")
        if not (0 <= self.low_cut_probability <= 1 and 0 <= self.room_probability <= 1):
            raise ValueError("probabilities must lie in [0, 1]")
        if not (0 < self.rt60_s[0] <= self.rt60_s[1] and 0 <= self.wet[0] <= self.wet[1]):
            raise ValueError(f"need 0 < rt60 low <= high and 0 <= wet low <= high: {self.rt60_s}, {self.wet}")

    @classmethod
    def off(cls) -> Augmentation:
        return cls(0.0, 0, 0.0, 0.0, 0.0)

    def preroll(self, sample_rate: int) -> int:
        """Samples of context read before a crop, so that its reverberation starts already built up."""
        return int(self.rt60_s[1] * sample_rate) if self.room_probability > 0 else 0


def microphone_response(freqs: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Random magnitude gains at ``freqs`` (Hz): tilt, bumps and dips in log-frequency, a low cut."""
    octaves = np.log2(np.clip(freqs, 50.0, 11000.0) / 1000.0)
    gain_db = rng.uniform(-aug.tilt_db_per_octave, aug.tilt_db_per_octave) * octaves
    for _ in range(int(rng.integers(0, aug.bumps + 1))):
        centre, width = rng.uniform(np.log2(0.15), np.log2(8.0)), rng.uniform(0.3, 1.5)
        gain_db = gain_db + rng.uniform(-aug.bump_db, aug.bump_db) * np.exp(
            -0.5 * ((octaves - centre) / width) ** 2
        )
    gain = 10 ** (gain_db / 20)
    if rng.random() < aug.low_cut_probability:
        corner = rng.uniform(40.0, 150.0)
        gain = gain / np.sqrt(1 + (corner / np.maximum(freqs, 1e-3)) ** 4)
    return gain


def room_response(length: int, sample_rate: int, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response of ``length`` samples with unit energy (no direct path)."""
    rt60 = rng.uniform(*aug.rt60_s)
    t = np.arange(length) / sample_rate
    noise = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    high = 1 / (1 + (rng.uniform(1500.0, 4000.0) / np.maximum(freqs, 1.0)) ** 2)  # share above the crossover
    low_part, high_part = np.fft.irfft(noise * (1 - high), length), np.fft.irfft(noise * high, length)
    decay_high = rt60 * rng.uniform(0.35, 0.8)  # highs die faster (air absorption, soft walls)
    rir = low_part * np.exp(-6.91 * t / rt60) + high_part * np.exp(-6.91 * t / decay_high)
    rir[: int(rng.uniform(0.003, 0.03) * sample_rate)] = 0.0  # pre-delay before the first reflections
    return rir / max(np.sqrt(np.sum(rir**2)), 1e-12)


def augment_crop(
    audio: np.ndarray, preroll: int, sample_rate: int, aug: Augmentation, rng: np.random.Generator
) -> np.ndarray:
    """``audio[preroll:]`` as heard through a random microphone (and room), at the dry crop's RMS."""
    dry = audio[preroll:]
    n = 1 << int(np.ceil(np.log2(2 * len(audio))))  # linear, not circular, convolution
    spectrum = np.fft.rfft(audio, n) * microphone_response(np.fft.rfftfreq(n, 1 / sample_rate), aug, rng)
    if rng.random() < aug.room_probability:
        rir = room_response(max(preroll, 1), sample_rate, aug, rng)
        spectrum = spectrum * (1 + np.sqrt(rng.uniform(*aug.wet)) * np.fft.rfft(rir, n))
    wet = np.fft.irfft(spectrum, n)[preroll : len(audio)]
    rms_dry, rms_wet = np.sqrt(np.mean(dry**2)), np.sqrt(np.mean(wet**2))
    return (wet * (rms_dry / rms_wet if rms_wet > 0 else 0.0)).astype(np.float32)
