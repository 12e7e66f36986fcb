"""Training data: a folder of audio files, read as random mono crops at the model's sample rate.

Every crop is a pure function of (seed, step, index), so a resumed run, or one with data workers,
sees exactly the crops an uninterrupted single-process run would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cqtrestore.augment import Augmentation, augment_crop
from cqtrestore.metrics import frame_power

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
VALID_STEP = 2**40  # the "step" whose crops form the validation set; training steps never reach it


class DataError(ValueError):
    """A data folder that cannot be trained on."""


@dataclass(frozen=True)
class AudioFile:
    path: Path
    frames: int
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def scan_audio(root: str | Path, min_seconds: float = 0.0) -> tuple[list[AudioFile], dict[str, int]]:
    """Audio files under ``root`` (recursive, sorted) and counts of those skipped, by reason."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    files, skipped = [], {"unreadable": 0, "too short": 0}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError):
            skipped["unreadable"] += 1
            continue
        if info.frames <= 0 or info.frames / info.samplerate < min_seconds:
            skipped["too short"] += 1
            continue
        files.append(AudioFile(path, info.frames, info.samplerate))
    if not files:
        found = ", ".join(f"{n} {why}" for why, n in skipped.items() if n) or "no audio files"
        shortest = f"; files must last at least {min_seconds:.2f} s" if skipped["too short"] else ""
        raise DataError(
            f"{root}: nothing to train on ({found}{shortest}; looked for {', '.join(AUDIO_SUFFIXES)})"
        )
    return files, skipped


def split_files(
    files: list[AudioFile], valid_fraction: float, seed: int
) -> tuple[list[AudioFile], list[AudioFile]]:
    """Hold out about ``valid_fraction`` of the audio (whole files, chosen from the seed)."""
    if not 0 <= valid_fraction < 1:
        raise DataError(f"valid fraction must be in [0, 1), got {valid_fraction}")
    if valid_fraction == 0 or len(files) < 2:
        return files, []
    order = np.random.default_rng([seed, 7]).permutation(len(files))
    total, valid, held = sum(f.seconds for f in files), [], 0.0
    for i in order:
        if held >= valid_fraction * total or len(valid) == len(files) - 1:
            break
        valid.append(files[i])
        held += files[i].seconds
    chosen = {f.path for f in valid}
    return [f for f in files if f.path not in chosen], valid


def read_mono(path: Path, start: int, frames: int) -> np.ndarray:
    """``frames`` samples from ``start``, mixed down to mono, float32, zero-padded past the end."""
    audio, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return np.pad(mono, (0, frames - len(mono))) if len(mono) < frames else mono


class RandomCrops:
    """Random crops at the model rate; near-silent ones redrawn; random gain and polarity; with
    ``augment``, a random microphone and room too (``cqtrestore.augment``)."""

    def __init__(
        self,
        files: list[AudioFile],
        segment: int,
        sample_rate: int,
        seed: int = 0,
        gain_db: float = 3.0,
        silence_rms: float = 1e-3,
        attempts: int = 20,
        augment: Augmentation | None = None,
    ) -> None:
        if not files:
            raise DataError("no audio files to crop from")
        self.files, self.segment, self.sample_rate = files, segment, sample_rate
        self.augment = augment
        self.preroll = augment.preroll(sample_rate) if augment is not None else 0
        self.seed, self.gain_db, self.silence_rms, self.attempts = seed, gain_db, silence_rms, attempts
        weights = np.array([f.seconds for f in files])
        self.weights = weights / weights.sum()

    def _read(self, file: AudioFile, rng: np.random.Generator) -> np.ndarray:
        """``preroll + segment`` samples at the model rate (the preroll zero where the file starts)."""
        native = math.ceil(self.segment * file.sample_rate / self.sample_rate)
        start = int(rng.integers(0, max(file.frames - native, 0) + 1))
        before = math.ceil(self.preroll * file.sample_rate / self.sample_rate)
        audio = read_mono(file.path, start - min(before, start), native + min(before, start))
        audio = np.pad(audio, (before - min(before, start), 0))
        if file.sample_rate != self.sample_rate:
            import resampy

            audio = resampy.resample(audio, file.sample_rate, self.sample_rate, axis=0)
        audio = audio[max(round(before * self.sample_rate / file.sample_rate) - self.preroll, 0) :]
        length = self.preroll + self.segment
        return np.pad(audio, (0, max(0, length - len(audio))))[:length]

    def crop(self, step: int, index: int) -> np.ndarray:
        """Crop ``index`` of batch ``step`` (deterministic from the seed)."""
        rng = np.random.default_rng([self.seed, step, index])
        for _ in range(self.attempts):
            audio = self._read(self.files[rng.choice(len(self.files), p=self.weights)], rng)
            if np.sqrt(np.mean(audio[self.preroll :] ** 2)) >= self.silence_rms:
                break
        gain = 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20) * rng.choice([-1.0, 1.0])
        if self.augment is not None:
            audio = augment_crop(audio, self.preroll, self.sample_rate, self.augment, rng)
        return (audio * gain).astype(np.float32)

    def batch(self, step: int, size: int, offset: int = 0) -> torch.Tensor:
        """Crops ``offset .. offset + size`` of batch ``step`` as a (size, segment) tensor."""
        return torch.from_numpy(np.stack([self.crop(step, offset + i) for i in range(size)]))


class StepCrops(torch.utils.data.Dataset):
    """The crops of steps ``start .. stop``, ``size`` per step from ``offset``, item k being crop
    (start + k // size, offset + k % size): a DataLoader over it in order yields the batches."""

    def __init__(self, crops: RandomCrops, start: int, stop: int, size: int, offset: int = 0) -> None:
        self.crops, self.start, self.stop, self.size, self.offset = crops, start, stop, size, offset

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.size

    def __getitem__(self, k: int) -> np.ndarray:
        return self.crops.crop(self.start + k // self.size, self.offset + k % self.size)


def crop_batches(
    crops: RandomCrops, start: int, stop: int, size: int, offset: int = 0, workers: int = 0
) -> torch.utils.data.DataLoader:
    """Batches (size, segment) of steps ``start .. stop``, read by ``workers`` processes (0: in this one).

    The crops are those of ``crops.batch(step, size, offset)``, whatever the number of workers."""
    dataset = StepCrops(crops, start, stop, size, offset)
    return torch.utils.data.DataLoader(
        dataset, batch_size=size, num_workers=workers, prefetch_factor=4 if workers else None
    )


def fixed_crops(
    files: list[AudioFile], segment: int, sample_rate: int, count: int, seed: int
) -> torch.Tensor:
    """A fixed set of validation crops (no augmentation), the same on every call."""
    return RandomCrops(files, segment, sample_rate, seed=seed, gain_db=0.0).batch(step=VALID_STEP, size=count)


SPECTRUM_STATISTICS = ("mean", "root")


def estimate_spectrum(
    crops: RandomCrops, count: int = 1024, bins: int = 513, seed_step: int = 2**41, statistic: str = "mean"
) -> np.ndarray:
    """The data's power spectrum P(f) at ``bins`` frequencies from 0 Hz to Nyquist (Welch, Hann).

    Averaged over ``count`` crops of the (augmented) training distribution, drawn as the crops of one
    "step" that training never reaches; normalised so that white noise of variance s² gives P = s².
    ``statistic="root"``: (4/π)·(mean over Welch frames of √power)² (the same s² for stationary noise),
    for a signal whose level varies about halfway in dB between the mean power and
    its geometric mean; piano's highs live in a few loud frames, so the mean power at 5 kHz is ~33 dB
    above a typical frame's (valid split) and a Gaussian start with it keeps the noise of quiet frames."""
    n_fft = 2 * (bins - 1)
    if crops.segment < n_fft:
        raise DataError(f"crops of {crops.segment} samples are shorter than the {n_fft}-point spectrum")
    if statistic not in SPECTRUM_STATISTICS:
        raise ValueError(f"unknown spectrum statistic {statistic!r}; choose one of {SPECTRUM_STATISTICS}")
    total, frames = torch.zeros(bins, dtype=torch.float64), 0
    for i in range(count):
        power = frame_power(torch.from_numpy(crops.crop(seed_step, i)).double(), n_fft, n_fft // 2)
        total += (power.sqrt() if statistic == "root" else power).sum(dim=(0, 2))
        frames += power.shape[0] * power.shape[2]
    if statistic == "root":
        # |X|² of stationary Gaussian noise is exponential, E|X| = √(π/4 · E|X|²): 4/π keeps P = s².
        return ((total / frames) ** 2 * (4 / math.pi)).numpy()
    return (total / frames).numpy()
