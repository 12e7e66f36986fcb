"""Restoration: a file or an array -> model-rate windows -> batched conditioned sampler -> crossfade.

Long files stream through three passes with memory bounded by a few windows, whatever the file length:

1. the input is resampled to the model rate block by block into a temporary file (its RMS measured);
2. overlapping 2^16-sample windows are read from it, restored in batches (channels and windows share a
   batch; with gaps, each window carries its own operator), and crossfaded into a second temporary file;
3. the input and the restored signal are read side by side, the restored one resampled back to the input
   rate, combined as ``combine`` says and written atomically to the output.

Above the model's Nyquist frequency (11.025 kHz for the 22.05 kHz models) the model sees nothing. There
the output keeps the input's own content (its part above the model band), except inside gaps (missing,
so left empty) and when the degradation includes clipping (that band then holds mostly clipping
distortion, so it is dropped). With gaps only, every observed input sample is copied to the output
unchanged; with a lowpass, the output's band below the cutoff is the input's (data consistency).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from cqtrestore import audio
from cqtrestore.diffusion import Denoiser, SamplerOptions, sample_heun
from cqtrestore.guidance import GuidanceOptions, default_guidance, guided_denoiser
from cqtrestore.operators import Clip, Compose, Gap, Operator

WINDOW = 65536  # 2^16 samples: 2.97 s at 22.05 kHz, the paper's segment
TARGET_RMS = 0.057  # the training audio's level (σ_data): inputs are scaled to it and back
PASS_THROUGH = 16  # windows per batch at most, so memory stays bounded when most windows need no work
Progress = Callable[[int, int], None]  # (windows done, windows in all)


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: guidance, sampler, seed, batching, window overlap, loudness normalisation, device."""

    guidance: GuidanceOptions | None = None  # None: the paper's choice for the operator
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    seed: int = 0
    batch_size: int = 4
    overlap: int = audio.DEFAULT_OVERLAP
    context: int = audio.DEFAULT_CONTEXT
    normalize: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (
            isinstance(self.batch_size, bool)
            or int(self.batch_size) != self.batch_size
            or self.batch_size < 1
        ):
            raise ValueError(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        if not 0 <= self.overlap <= WINDOW // 2:
            raise ValueError(f"overlap must lie between 0 and {WINDOW // 2} samples, got {self.overlap}")
        if self.context < 0:
            raise ValueError(f"gap context must be >= 0 samples, got {self.context}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must lie in [0, 2^63), got {self.seed}")


@dataclass(frozen=True)
class FileReport:
    """What ``restore_file`` did: rates, length, windows restored and skipped, gain, samples clipped."""

    sample_rate: int
    channels: int
    frames: int
    windows: int
    windows_restored: int
    gain: float
    clipped_samples: int
    operator: str
    guidance: GuidanceOptions


def restore_segments(
    denoiser: Denoiser,
    operator: Operator,
    y: Tensor,
    guidance: GuidanceOptions | None = None,
    sampler: SamplerOptions | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Posterior samples x̂ with A(x̂) ≈ y for observations y (batch, length) at the model rate."""
    sampler = sampler or SamplerOptions()
    guidance = guidance or default_guidance(operator)
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device) * sampler.sigma_max
    conditioned = guided_denoiser(denoiser, operator, y, guidance)
    with torch.inference_mode(guidance.mode == "dc"):
        return sample_heun(conditioned, noise, sampler.sigmas(), generator=generator, **sampler.churn())


def keeps_high_band(operator: Operator) -> bool:
    """Whether the input's content above the model band goes to the output (not with clipping)."""
    parts = operator.operators if isinstance(operator, Compose) else (operator,)
    return not any(isinstance(part, Clip) for part in parts)


def gap_ranges(operator: Operator) -> list[tuple[int, int]]:
    """All gap sample ranges of an operator (or of the gaps in a chain), sorted."""
    parts = operator.operators if isinstance(operator, Compose) else (operator,)
    return sorted(r for part in parts if isinstance(part, Gap) for r in part.ranges)


def only_gaps(operator: Operator) -> bool:
    """True when the operator removes time ranges and nothing else (observed samples are exact)."""
    parts = operator.operators if isinstance(operator, Compose) else (operator,)
    return all(isinstance(part, Gap) for part in parts)


class Restorer:
    """A loaded prior ready to restore audio: the denoiser, its sample rate and the device."""

    def __init__(
        self, denoiser: Denoiser, sample_rate: int = 22050, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.denoiser = denoiser.to(self.device).eval()
        for parameter in self.denoiser.parameters():
            parameter.requires_grad_(False)
        self.sample_rate = int(sample_rate)

    def restore_windows(self, y: Tensor, operator: Operator, options: RestoreOptions, seed: int) -> Tensor:
        """Restore one batch of model-rate windows (batch, WINDOW) degraded by the same ``operator``."""
        guidance = options.guidance or default_guidance(operator)
        generator = torch.Generator(self.device).manual_seed(seed)
        y = y.to(self.device, torch.float32)
        return restore_segments(self.denoiser, operator, y, guidance, options.sampler, generator).cpu()

    def restore_file(
        self,
        in_path: str | Path,
        out_path: str | Path,
        operator: Operator,
        options: RestoreOptions = RestoreOptions(),
        progress: Progress | None = None,
    ) -> FileReport:
        """Restore a file degraded by ``operator`` (at any rate); write ``out_path`` atomically."""
        info = audio.probe(in_path)
        model_operator = operator.at_rate(self.sample_rate)
        with tempfile.TemporaryDirectory(prefix="cqtrestore-") as name:
            folder = Path(name)
            rms = _resample_file(Path(in_path), folder / "down.wav", self.sample_rate)
            gain = _gain(rms) if options.normalize else 1.0
            windows, restored = self._restore_model_rate(
                folder / "down.wav", folder / "restored.wav", model_operator, options, gain, progress
            )
            _resample_file(folder / "restored.wav", folder / "up.wav", info.sample_rate, info.frames)
            high = None
            if keeps_high_band(operator) and info.sample_rate > self.sample_rate and not only_gaps(operator):
                high = folder / "down-up.wav"  # the input's model band at the input rate
                _resample_file(folder / "down.wav", high, info.sample_rate, info.frames)
            gaps = gap_ranges(operator.at_rate(info.sample_rate)) if only_gaps(operator) else []
            clipped = _combine(Path(in_path), info, folder / "up.wav", high, Path(out_path), gaps)
        guidance = options.guidance or default_guidance(model_operator)
        return FileReport(
            info.sample_rate,
            info.channels,
            info.frames,
            windows,
            restored,
            gain,
            clipped,
            operator.describe(),
            guidance,
        )

    def restore(
        self,
        samples: np.ndarray,
        sample_rate: int,
        operator: Operator,
        options: RestoreOptions = RestoreOptions(),
    ) -> np.ndarray:
        """Restore an array (frames,) or (frames, channels) at ``sample_rate``; same shape back."""
        array = np.asarray(samples, dtype=np.float32)
        if array.ndim not in (1, 2) or array.shape[0] == 0:
            raise ValueError(
                f"audio must have shape (frames,) or (frames, channels) with frames > 0, got {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("audio contains NaN or infinite samples")
        with tempfile.TemporaryDirectory(prefix="cqtrestore-") as folder:
            in_path, out_path = Path(folder) / "in.wav", Path(folder) / "out.wav"
            sf.write(in_path, array, int(sample_rate), subtype="FLOAT")
            self.restore_file(in_path, out_path, operator, options)
            restored, _ = sf.read(out_path, dtype="float32", always_2d=array.ndim == 2)
        return restored

    def _restore_model_rate(
        self,
        down_path: Path,
        restored_path: Path,
        operator: Operator,
        options: RestoreOptions,
        gain: float,
        progress: Progress | None,
    ) -> tuple[int, int]:
        """Pass 2: model-rate windows, restored in batches, crossfaded into ``restored_path``."""
        info = audio.probe(down_path)
        gaps = gap_ranges(operator)
        starts = audio.plan_windows(info.frames, WINDOW, options.overlap, gaps, options.context)
        scaled = operator.scaled(gain)
        overlap_add = audio.OverlapAdd(info.frames, starts, WINDOW, options.overlap, info.channels)
        restored = 0
        with (
            sf.SoundFile(down_path) as source,
            sf.SoundFile(restored_path, "w", self.sample_rate, info.channels, subtype="FLOAT") as sink,
        ):
            for batch in _batches(starts, info.channels, scaled, options.batch_size):
                outputs = self._restore_batch(source, batch, scaled, options, gain, starts)
                restored += sum(1 for index, _ in outputs if index in batch.restored)
                for index, segment in outputs:
                    sink.write(overlap_add.add(index, segment))
                if progress is not None:
                    progress(batch.last + 1, len(starts))
            sink.write(overlap_add.finish())
        return len(starts), restored

    def _restore_batch(self, source, batch, operator, options, gain, starts):  # noqa: ANN001, ANN202
        """Read, restore (or pass through) and return [(window index, (WINDOW, channels) array)]."""
        windows = {index: audio.read_block(source, starts[index], WINDOW) for index in batch.indices}
        todo = [index for index in batch.indices if index in batch.restored]
        if todo:
            items = np.stack([windows[index][:, c] for index in todo for c in range(source.channels)])
            local = operator.window(starts[todo[0]], WINDOW)
            seed = options.seed * 1_000_003 + todo[0]
            out = self.restore_windows(torch.from_numpy(items * gain), local, options, seed).numpy() / gain
            out = out.reshape(len(todo), source.channels, WINDOW).transpose(0, 2, 1)
            windows.update({index: out[k] for k, index in enumerate(todo)})
        return [(index, windows[index]) for index in batch.indices]


@dataclass
class _Batch:
    """Window indices handled together; ``restored`` those that need the sampler (others pass through)."""

    indices: list[int]
    restored: set[int]

    @property
    def last(self) -> int:
        return self.indices[-1]


def _batches(starts: list[int], channels: int, operator: Operator, batch_size: int):  # noqa: ANN202
    """Group consecutive windows: up to ``batch_size`` items (window x channel) that share one operator,
    plus the windows between them that need no restoration (at most ``PASS_THROUGH`` per batch)."""
    current, key = _Batch([], set()), None
    for index, start in enumerate(starts):
        local = operator.window(start, WINDOW)
        needs = not local.observes_everything
        window_key = local.describe() if operator.time_varying else None
        full = (len(current.restored) + 1) * channels > batch_size or window_key != key
        if current.indices and (
            len(current.indices) >= PASS_THROUGH or (needs and current.restored and full)
        ):
            yield current
            current = _Batch([], set())
        current.indices.append(index)
        if needs:
            current.restored.add(index)
            key = window_key
    if current.indices:
        yield current


def _gain(rms: float) -> float:
    """Scale to the training level, within ±40 dB (silence stays at unit gain)."""
    if rms <= 1e-6:
        return 1.0
    return float(np.clip(TARGET_RMS / rms, 0.01, 100.0))


def _resample_file(src: Path, dst: Path, sample_rate: int, frames: int | None = None) -> float:
    """Resample ``src`` into ``dst`` (float WAV) block by block, trimmed or padded to ``frames``.

    Returns the RMS of the non-zero output samples (the loudness used for normalisation)."""
    info = audio.probe(src)
    resampler = audio.StreamResampler(info.sample_rate, sample_rate, info.channels)
    energy, count, written = 0.0, 0, 0
    with sf.SoundFile(dst, "w", sample_rate, info.channels, subtype="FLOAT") as sink:
        for out in _chain(
            map(resampler.process, audio.iter_blocks(src, audio.BLOCK_FRAMES)), resampler.flush
        ):
            if frames is not None:
                out = out[: max(frames - written, 0)]
            sink.write(out)
            written += len(out)
            energy += float(np.sum(np.square(out, dtype=np.float64)))
            count += int(np.count_nonzero(out))
        if frames is not None and written < frames:
            sink.write(np.zeros((frames - written, info.channels), np.float32))
    return math.sqrt(energy / count) if count else 0.0


def _chain(blocks, last):  # noqa: ANN001, ANN202
    """The blocks, then ``last()``."""
    yield from blocks
    yield last()


def _combine(
    in_path: Path, info: audio.AudioInfo, up_path: Path, high_path: Path | None, out_path: Path, gaps: list
) -> int:
    """Pass 3: restored (at the input rate) + the input's band above the model's, or the input itself
    outside gaps when only gaps were missing; written atomically. Returns how many samples were clipped."""
    fmt, subtype = audio.output_format(info, Path(out_path))
    with (
        audio.AtomicAudioWriter(out_path, info.sample_rate, info.channels, fmt, subtype) as writer,
        sf.SoundFile(in_path) as source,
        sf.SoundFile(up_path) as restored,
        sf.SoundFile(high_path) if high_path else contextlib.nullcontext() as low_of_input,
    ):
        for start in range(0, info.frames, audio.BLOCK_FRAMES):
            frames = min(audio.BLOCK_FRAMES, info.frames - start)
            x = audio.read_block(source, start, frames)
            out = audio.read_block(restored, start, frames)
            if gaps:
                observed = _observed_mask(start, frames, gaps)
                out = np.where(observed[:, None], x, out)
            elif high_path is not None:
                out = out + (x - audio.read_block(low_of_input, start, frames))
            writer.write(out)
    return writer.clipped


def _observed_mask(start: int, frames: int, gaps: list[tuple[int, int]]) -> np.ndarray:
    """True for the samples of [start, start + frames) outside every gap."""
    mask = np.ones(frames, dtype=bool)
    for first, stop in gaps:
        a, b = max(first - start, 0), min(stop - start, frames)
        if a < b:
            mask[a:b] = False
    return mask
