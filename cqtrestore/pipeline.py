"""Restoration: a file or an array -> model-rate windows -> batched conditioned sampler -> crossfade.

Long files stream through three passes with memory bounded by a few windows, whatever the file length:

1. the input is resampled to the model rate block by block into a temporary file (its RMS measured);
2. overlapping 2^16-sample windows are read from it, restored in batches (channels and windows share a
   batch; with gaps, each window carries its own operator), and crossfaded into a second temporary file;
3. the input and the restored signal are read side by side, the restored one resampled back to the input
   rate, combined as ``combine`` says and written atomically to the output.

Above the model's Nyquist frequency (11.025 kHz for the 22.05 kHz models) the model sees nothing. There
the output keeps the input's own content (its part above the model band), except inside gaps (missing,
so left empty) and when the degradation includes clipping or hiss (that band then holds mostly clipping
distortion or noise, so it is dropped). With gaps only, every observed input sample is copied to the output
unchanged; with a lowpass, the output's band below the cutoff is the input's (data consistency).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from cqtrestore import audio
from cqtrestore.blind import BlindLowPass, FilterEstimation, blind_part
from cqtrestore.diffusion import Denoiser, Generators, SamplerOptions, noise_like, run_sampler
from cqtrestore.guidance import GuidanceOptions, default_guidance, guided_denoiser
from cqtrestore.noise import REFINE_BELOW_HZ, Hiss
from cqtrestore.operators import Clip, Compose, Gap, LowPass, Operator, Stack, stack
from cqtrestore.quality import Plan
from cqtrestore.warmstart import classical_estimate, has_estimate

WINDOW = 65536  # 2^16 samples: 2.97 s at 22.05 kHz, the paper's segment
TARGET_RMS = 0.057  # the training audio's level (σ_data): inputs are scaled to it and back
PASS_THROUGH = 16  # windows held at most (batched or waiting to be crossfaded): memory stays bounded
Progress = Callable[[int, int], None]  # (windows done, windows in all)
MAX_DRAWS = 16  # posterior draws per window a restore may average
ESTIMATION_WINDOWS = 3  # a blind filter is estimated on the file's loudest windows, then held fixed
FIT_STEPS = 25  # Adam steps on the filter per network evaluation (cheap: one FFT of each window)


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: guidance, sampler, seed, batching, window overlap, loudness normalisation, device."""

    guidance: GuidanceOptions | None = None  # None: the paper's choice for the operator
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    warm_start: bool = False  # start from the classical estimate noised to sampler.sigma_max
    draws: int = 1  # posterior draws per window, averaged (restore_average)
    denoise_first: Plan | None = None  # a chain ending in hiss (split_hiss): the hiss first, then the rest
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
        if isinstance(self.draws, bool) or int(self.draws) != self.draws or not 1 <= self.draws <= MAX_DRAWS:
            raise ValueError(f"draws must be an integer from 1 to {MAX_DRAWS}, got {self.draws!r}")
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
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    warm_start: bool = False
    draws: int = 1
    refined: bool = False  # hiss: the prior-guided Wiener filter ran after the sampler (Hiss.refine)
    denoised_first: str = ""  # a chain ending in hiss: how its hiss was removed first (describe_sampler)

    def describe_sampler(self) -> str:
        """E.g. "dpmpp2m, 12 steps from the classical estimate at σ 0.3" or "heun, 35 steps from noise";
        ", mean of 2 draws" after it when several posterior draws were averaged, and the second stage
        of hiss removal where it ran; a chain's hiss removal first, where it came first."""
        main = describe_run(self.sampler, self.warm_start, self.draws, self.refined)
        return f"hiss removed first ({self.denoised_first}), then {main}" if self.denoised_first else main


def describe_run(sampler: SamplerOptions, warm_start: bool, draws: int = 1, refined: bool = False) -> str:
    """One sampler run in words, e.g. "dpmpp2m, 6 steps from the classical estimate at σ 0.2"."""
    start = f"the classical estimate at σ {sampler.sigma_max:.3g}" if warm_start else "noise"
    averaged = f", mean of {draws} draws" if draws > 1 else ""
    khz = f"{REFINE_BELOW_HZ / 1000:g} kHz"
    second = f", then the prior-guided Wiener filter below {khz} and the residual above" if refined else ""
    return f"{sampler.solver}, {sampler.steps} steps from {start}{averaged}{second}"


def restore_segments(
    denoiser: Denoiser,
    operator: Operator,
    y: Tensor,
    guidance: GuidanceOptions | None = None,
    sampler: SamplerOptions | None = None,
    generator: Generators = None,
    start: Tensor | None = None,
) -> Tensor:
    """Posterior samples x̂ with A(x̂) ≈ y for observations y (batch, length) at the model rate;
    ``generator`` one for the batch or one per item. ``start``: a warm start, an estimate of x that the
    sampler begins from, noised to its σ_max (Chung et al. 2022), instead of pure noise."""
    sampler = sampler or SamplerOptions()
    guidance = guidance or default_guidance(operator)
    gain = None
    if isinstance(operator, Hiss):  # y already holds its noise: start from y, at the noise's level
        if not hiss_sampled(operator, sampler, y.shape[-1]):
            return y.clone()  # quieter than the sampler's finest step: nothing to remove
        sampler = replace(sampler, sigma_max=operator.start_sigma(y.shape[-1], y))
        x, gain = operator.whiten(y, noise_like(y, generator), data_power(denoiser, y.shape[-1], y))
    else:
        x = noise_like(y, generator) * sampler.sigma_max
        if start is not None:
            x = x + start.to(x)
        hiss = _final_hiss(operator)
        if hiss is not None:  # below the noise's level y says nothing more: guidance stops there
            floor = hiss.start_sigma(y.shape[-1], y)
            guidance = replace(guidance, rg_sigma_min=max(guidance.rg_sigma_min, floor))
    conditioned = guided_denoiser(denoiser, operator, y, guidance)
    with torch.inference_mode(guidance.mode in ("dc", "none")):
        out = run_sampler(conditioned, x, sampler, generator)
    if gain is not None and not bool((gain == 1).all()):  # coloured hiss: undo the whitening's scaling
        out = torch.fft.irfft(torch.fft.rfft(out) * gain.to(out.device), out.shape[-1]).to(out.dtype)
    return out


def restore_average(
    denoiser: Denoiser,
    operator: Operator,
    y: Tensor,
    guidance: GuidanceOptions | None = None,
    sampler: SamplerOptions | None = None,
    generator: Generators = None,
    start: Tensor | None = None,
    draws: int = 1,
) -> Tensor:
    """The mean of ``draws`` posterior samples (``restore_segments`` one after another, the generators
    running on, so the first draw is the single-draw result): closer to the posterior mean E[x | y], the
    MMSE estimate that SI-SDR rewards, with less of one draw's sampling noise. Hiss: then ``Hiss.refine``."""
    total = restore_segments(denoiser, operator, y, guidance, sampler, generator, start)
    draws = distinct_draws(operator, sampler or SamplerOptions(), draws, y.shape[-1])
    for _ in range(draws - 1):
        total = total + restore_segments(denoiser, operator, y, guidance, sampler, generator, start)
    if isinstance(operator, Hiss) and hiss_sampled(operator, sampler or SamplerOptions(), y.shape[-1]):
        return operator.refine(y, total / draws)  # the mean as the pilot of the prior-guided Wiener filter
    return total / draws


def hiss_sampled(hiss: Hiss, sampler: SamplerOptions, length: int = WINDOW) -> bool:
    """Whether the sampler runs for this hiss: its start level is above twice the finest step (else the
    input is returned as it is, and the second stage, ``Hiss.refine``, does not run either)."""
    return hiss.start_sigma(length, torch.zeros(1, dtype=torch.float64)) > 2 * sampler.sigma_min


def split_hiss(operator: Operator) -> tuple[Operator, Operator] | None:
    """(the hiss, the rest) of a chain that ends in hiss after lowpasses and gaps only, which is restored
    in two stages (``RestoreOptions.denoise_first``): the hiss removed from y as ``denoise`` does, then the
    rest restored from that; a blind filter of the rest sees the denoised signal (``after_hiss``).
    Sampling the chain in one run, with guidance that must stop at the noise's level, lost 4-10 dB SI-SDR
    against the noisy input (docs/benchmarks.md). Per item for a ``Stack``; None for anything else
    (clipping stays in the chain: a denoiser would round the plateaus the clipped samples are found by)."""
    if isinstance(operator, Stack):
        parts = [split_hiss(part) for part in operator.operators]
        if any(part is None for part in parts):
            return None
        return stack([part[0] for part in parts]), stack([part[1] for part in parts])
    if not isinstance(operator, Compose) or not isinstance(operator.operators[-1], Hiss):
        return None
    hiss, rest = operator.operators[-1], operator.operators[:-1]
    if not all(isinstance(part, LowPass | BlindLowPass | Gap) for part in rest):
        return None
    rest = tuple(part.after_hiss(hiss) if isinstance(part, BlindLowPass) else part for part in rest)
    return hiss, rest[0] if len(rest) == 1 else Compose(*rest)


def distinct_draws(operator: Operator, sampler: SamplerOptions, draws: int, length: int = WINDOW) -> int:
    """``draws``, or 1 where every draw would be the same: flat hiss under an ODE solver (dpmpp2m, or
    heun without churn), whose sampler starts from y itself and adds no noise (``Hiss.starts_from_y``)."""
    stochastic = sampler.solver == "ancestral" or sampler.s_churn > 0
    like = torch.zeros(1, dtype=torch.float64)
    if isinstance(operator, Hiss) and not stochastic and operator.starts_from_y(length, like):
        return 1
    return draws


def data_power(denoiser: object, length: int, like: Tensor) -> Tensor:
    """The prior's power spectrum P(f) per sample on the rfft bins of ``length``: the spectral
    denoiser's, σ_data² for a scalar one, 0 (plain whitening) for a denoiser that says nothing. Wrappers
    that keep the prior as ``.denoiser`` (the web page's cancellable one, filter estimation) are seen
    through."""
    for _ in range(8):
        if isinstance(denoiser, Denoiser) or not hasattr(denoiser, "denoiser"):
            break
        denoiser = denoiser.denoiser
    if isinstance(denoiser, Denoiser):
        if denoiser.spectrum is not None:
            return denoiser.power(length, like.double())[0]
        return like.new_full((length // 2 + 1,), denoiser.sigma_data**2, dtype=torch.float64)
    return like.new_zeros((length // 2 + 1,), dtype=torch.float64)


def _final_hiss(operator: Operator) -> Hiss | None:
    """The noise model ending a chain, if any."""
    last = operator.operators[-1] if isinstance(operator, Compose) else None
    return last if isinstance(last, Hiss) else None


def keeps_high_band(operator: Operator) -> bool:
    """Whether the input's content above the model band goes to the output (not with clipping, nor
    with hiss: there it is mostly distortion or noise)."""
    parts = operator.operators if isinstance(operator, Compose) else (operator,)
    return not any(isinstance(part, Clip | Hiss) for part in parts)


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

    def restore_windows(
        self,
        y: Tensor,
        operator: Operator,
        guidance: GuidanceOptions,
        sampler: SamplerOptions,
        seeds: Sequence[int],
        warm_start: bool = False,
        draws: int = 1,
        denoise_first: Plan | None = None,
    ) -> Tensor:
        """Restore one batch of model-rate items (batch, WINDOW); item i draws its noise from ``seeds[i]``.
        ``warm_start``: begin from the classical estimate (where the operator has one); ``draws``:
        posterior draws per item, averaged; ``denoise_first``: a chain ending in hiss in two stages."""
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        y = y.to(self.device, torch.float32)
        y, operator = self._denoise_first(operator, y, denoise_first, generators)
        if denoise_first is not None and operator.observes_everything:  # a window of hiss without its gap
            return y.cpu()
        start = classical_estimate(operator, y) if warm_start and has_estimate(operator) else None
        restored = restore_average(self.denoiser, operator, y, guidance, sampler, generators, start, draws)
        return restored.cpu()

    def _denoise_first(
        self, operator: Operator, y: Tensor, plan: Plan | None, generators: list[torch.Generator]
    ) -> tuple[Tensor, Operator]:
        """(y with its hiss removed, the rest of the chain) where ``plan`` is given and the chain splits
        (``split_hiss``); else (y, operator) as they are."""
        split = split_hiss(operator) if plan is not None else None
        if split is None:
            return y, operator
        hiss, rest = split
        denoised = restore_average(
            self.denoiser, hiss, y, plan.guidance, plan.sampler, generators, None, plan.draws
        )
        return denoised.to(y), rest

    def start(
        self,
        in_path: str | Path,
        out_path: str | Path,
        operator: Operator,
        options: RestoreOptions = RestoreOptions(),
        progress: Progress | None = None,
    ) -> FileRun:
        """Begin restoring a file: pass 1 (resample to the model rate), and the estimate of a blind
        filter not yet estimated; ``restore_runs`` does the rest."""
        run = FileRun(self.sample_rate, Path(in_path), Path(out_path), operator, options, progress)
        blind = blind_part(run.model_operator)
        if blind is not None and blind.needs_estimate:
            try:
                self.estimate_filter(run)
            except BaseException:
                run.close()
                raise
        return run

    def estimate_filter(self, run: FileRun, windows: int = ESTIMATION_WINDOWS) -> None:
        """Estimate the file's blind filter (BABE: jointly with the signal, while sampling) on its
        loudest ``windows`` windows, with the run's sampler; every window is then restored with it."""
        with sf.SoundFile(run.folder / "down.wav") as source:
            energy = [float(np.square(audio.read_block(source, start, WINDOW)).sum()) for start in run.starts]
            chosen = sorted(np.argsort(energy)[::-1][:windows])
            blocks = [audio.read_block(source, run.starts[index], WINDOW) for index in chosen]
        y = torch.from_numpy(np.concatenate([block.T for block in blocks]) * run.gain).to(self.device)
        y = y.to(torch.float32)
        seeds = [seed for index in chosen for seed in run.seeds(int(index))]
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        y, operator = self._denoise_first(run._scaled, y, run.options.denoise_first, generators)
        start = classical_estimate(operator, y) if run.options.warm_start else None
        estimation = FilterEstimation(self.denoiser, operator, y, FIT_STEPS)
        restore_segments(estimation, operator, y, run.guidance, run.options.sampler, generators, start)

    def restore_file(
        self,
        in_path: str | Path,
        out_path: str | Path,
        operator: Operator,
        options: RestoreOptions = RestoreOptions(),
        progress: Progress | None = None,
    ) -> FileReport:
        """Restore a file degraded by ``operator`` (at any rate); write ``out_path`` atomically."""
        run = self.start(in_path, out_path, operator, options, progress)
        for _, outcome in self.restore_runs([(None, run)]):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        raise AssertionError("restore_runs gave no outcome")  # pragma: no cover

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

    def restore_runs(
        self, runs: Iterable[tuple[Key, FileRun]]
    ) -> Iterator[tuple[Key, FileReport | Exception]]:
        """Pass 2 and 3 for a stream of started files, each outcome (a report, or the error that failed
        that file alone) as soon as its file is done. Windows of consecutive files share a batch when
        they share guidance and sampler settings; the next file is pulled from ``runs`` only when the
        current one has no windows left, so a caller can prepare it meanwhile."""
        batch: list[_Item] = []
        active: list[tuple[Key, FileRun]] = []
        try:
            for key, run in runs:
                active.append((key, run))
                try:
                    for item in run.windows():
                        if item.operator is None:
                            run.deliver(item.index, item.block)
                        else:
                            if batch and not _fits(batch, item):
                                self._sample(batch)
                            batch.append(item)
                        if batch and (_full(batch) or _backlog(active) + len(batch) > PASS_THROUGH):
                            self._sample(batch)
                        yield from _settle(active)
                except FAILURES as error:
                    run.error = error
                yield from _settle(active)
            if batch:
                self._sample(batch)
            yield from _settle(active)
        finally:
            for _, run in active:
                run.close()

    def _sample(self, batch: list[_Item]) -> None:
        """Restore the windows of ``batch`` together and hand each back to its file; empty the batch."""
        items, batch[:] = list(batch), []
        first = items[0].run
        try:
            y = np.concatenate([item.block.T * item.run.gain for item in items])
            operator = stack([item.operator for item in items for _ in range(item.run.channels)])
            seeds = [seed for item in items for seed in item.run.seeds(item.index)]
            options = first.options
            out = self.restore_windows(
                torch.from_numpy(y),
                operator,
                first.guidance,
                options.sampler,
                seeds,
                options.warm_start,
                options.draws,
                options.denoise_first,
            ).numpy()
        except FAILURES as error:  # the batch failed: so did its files (the others go on)
            for item in items:
                item.run.error = item.run.error or error
            return
        offset = 0
        for item in items:
            channels = item.run.channels
            item.run.deliver(item.index, out[offset : offset + channels].T / item.run.gain, restored=True)
            offset += channels


Key = TypeVar("Key")
FAILURES = (ValueError, OSError, RuntimeError, MemoryError)  # what fails one file (or one batch), not the run


@dataclass
class _Item:
    """One window of one file on its way to the sampler: (WINDOW, channels) samples and its operator
    (None: nothing is missing there, it passes through)."""

    run: FileRun
    index: int
    block: np.ndarray
    operator: Operator | None


def _fits(batch: list[_Item], item: _Item) -> bool:
    """Whether ``item`` may join ``batch``: same guidance, sampler and start, room for all its channels;
    a file with hiss only with itself (its noise model is its own, and a ``Stack`` of them is not one)."""
    first = batch[0].run
    settings = lambda run: (  # noqa: E731
        run.guidance,
        run.options.sampler,
        run.options.warm_start,
        run.options.draws,
        run.options.denoise_first,
        id(run) if isinstance(run._scaled, Hiss) or _final_hiss(run._scaled) is not None else None,
    )
    if settings(item.run) != settings(first):
        return False
    return sum(i.run.channels for i in batch) + item.run.channels <= first.options.batch_size


def _full(batch: list[_Item]) -> bool:
    """Whether ``batch`` holds as many items (windows x channels) as its batch size."""
    return sum(item.run.channels for item in batch) >= batch[0].run.options.batch_size


def _backlog(active: list) -> int:  # noqa: ANN001
    """Windows waiting for an earlier one before they can be crossfaded."""
    return sum(run.waiting for _, run in active)


def _settle(active: list) -> Iterator:  # noqa: ANN001
    """Finish every file that failed or has all its windows back; yield (key, report or error)."""
    for entry in list(active):
        key, run = entry
        if run.error is None and not run.complete:
            continue
        active.remove(entry)
        if run.error is not None:
            run.close()
            yield key, run.error
            continue
        try:
            yield key, run.finish()
        except FAILURES as error:
            run.close()
            yield key, error


def item_seed(seed: int, index: int, channel: int) -> int:
    """The noise seed of one item (window ``index``, ``channel``) of a file restored with ``seed``: an
    item's noise never depends on the batch, the order or the other files."""
    return int(np.random.SeedSequence([seed, index, channel]).generate_state(2, np.uint64)[0] >> 1)


class FileRun:
    """One file through the pipeline: pass 1 when created, then its windows out (``windows``), restored
    windows back in any order (``deliver``, crossfaded in order), pass 3 (``finish``). Its temporary
    folder is removed by ``finish`` or ``close``."""

    def __init__(
        self,
        model_rate: int,
        in_path: Path,
        out_path: Path,
        operator: Operator,
        options: RestoreOptions,
        progress: Progress | None = None,
    ) -> None:
        self.input, self.output, self.operator = in_path, out_path, operator
        self.model_rate, self.progress = model_rate, progress
        self.info = audio.probe(in_path)
        self.model_operator = operator.at_rate(model_rate)
        if self.info.sample_rate != model_rate:  # y is resampled below: clipped plateaus become ripple
            self.model_operator = self.model_operator.resampled()
        draws = distinct_draws(self.model_operator, options.sampler, options.draws)
        self.options = replace(options, draws=draws)  # the report says how many draws were averaged
        self.error: Exception | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="cqtrestore-")
        self.folder = Path(self._folder.name)
        try:
            rms = _resample_file(in_path, self.folder / "down.wav", model_rate)
            self.gain = _gain(rms) if options.normalize else 1.0
            down = audio.probe(self.folder / "down.wav")
        except BaseException:
            self._folder.cleanup()
            raise
        self.channels = down.channels
        gaps = gap_ranges(self.model_operator)
        self.starts = audio.plan_windows(down.frames, WINDOW, options.overlap, gaps, options.context)
        self._overlap_add = audio.OverlapAdd(down.frames, self.starts, WINDOW, options.overlap, down.channels)
        self._scaled = self.model_operator.scaled(self.gain)
        self._split = split_hiss(self._scaled) if options.denoise_first is not None else None
        self.guidance = options.guidance or default_guidance(self._main)
        self._pending: dict[int, np.ndarray] = {}
        self._next, self.restored = 0, 0
        self._files = contextlib.ExitStack()

    def windows(self) -> Iterator[_Item]:
        """Every window in order with its operator in the window's own time (None: nothing missing)."""
        source = self._files.enter_context(sf.SoundFile(self.folder / "down.wav"))
        self._sink = self._files.enter_context(
            sf.SoundFile(self.folder / "restored.wav", "w", self.model_rate, self.channels, subtype="FLOAT")
        )
        for index, start in enumerate(self.starts):
            local = self._scaled.window(start, WINDOW)
            block = audio.read_block(source, start, WINDOW)
            yield _Item(self, index, block, None if local.observes_everything else local)

    def seeds(self, index: int) -> list[int]:
        """The noise seeds of window ``index``'s items (one per channel)."""
        return [item_seed(self.options.seed, index, channel) for channel in range(self.channels)]

    def deliver(self, index: int, block: np.ndarray, restored: bool = False) -> None:
        """Window ``index`` is done: crossfade it (and any later ones waiting for it) into the output."""
        if self.error is not None:
            return
        self.restored += restored
        self._pending[index] = block
        try:
            while self._next in self._pending:
                self._sink.write(self._overlap_add.add(self._next, self._pending.pop(self._next)))
                self._next += 1
                if self.progress is not None:
                    self.progress(self._next, len(self.starts))
        except FAILURES as error:
            self.error = error

    @property
    def waiting(self) -> int:
        """Windows done but held until an earlier one is."""
        return len(self._pending)

    @property
    def complete(self) -> bool:
        """Every window is back."""
        return self._next == len(self.starts)

    def finish(self) -> FileReport:
        """Pass 3: back to the input rate, combined with the input, written atomically; then clean up."""
        try:
            self._sink.write(self._overlap_add.finish())
            self._files.close()
            folder, info, operator = self.folder, self.info, self.operator
            _resample_file(folder / "restored.wav", folder / "up.wav", info.sample_rate, info.frames)
            high = None
            if keeps_high_band(operator) and info.sample_rate > self.model_rate and not only_gaps(operator):
                high = folder / "down-up.wav"  # the input's model band at the input rate
                _resample_file(folder / "down.wav", high, info.sample_rate, info.frames)
            gaps = gap_ranges(operator.at_rate(info.sample_rate)) if only_gaps(operator) else []
            clipped = _combine(self.input, info, folder / "up.wav", high, self.output, gaps)
        finally:
            self.close()
        return FileReport(
            info.sample_rate,
            info.channels,
            info.frames,
            len(self.starts),
            self.restored,
            self.gain,
            clipped,
            operator.describe(),
            self.guidance,
            self._reported_sampler(),
            self.options.warm_start and has_estimate(self._main),
            self.options.draws,
            self._refined(self._main, self.options.sampler),
            self._first_stage(),
        )

    @property
    def _main(self) -> Operator:
        """The operator of the main sampler run: the rest of a chain whose hiss is removed first."""
        return self._scaled if self._split is None else self._split[1]

    def _refined(self, operator: Operator, sampler: SamplerOptions) -> bool:
        """Whether the prior-guided Wiener filter ran after a sampler run for ``operator``."""
        return (
            isinstance(operator, Hiss)
            and operator.refines
            and self.restored > 0
            and hiss_sampled(operator, sampler)
        )

    def _first_stage(self) -> str:
        """The hiss removal that ran first, in words ("" where none did)."""
        plan = self.options.denoise_first
        if self._split is None or self.restored == 0:
            return ""
        hiss = self._split[0]
        sampler = _from_noise_level(hiss, plan.sampler)
        return describe_run(sampler, plan.warm_start, 1, self._refined(hiss, plan.sampler))

    def _reported_sampler(self) -> SamplerOptions:
        """The sampler as it ran: for hiss, from the noise's own level rather than the preset's σ_max."""
        if isinstance(self._scaled, Hiss):
            return _from_noise_level(self._scaled, self.options.sampler)
        return self.options.sampler

    def close(self) -> None:
        """Close the temporary files and remove the folder (safe to call twice)."""
        self._files.close()
        self._folder.cleanup()


def _from_noise_level(hiss: Hiss, sampler: SamplerOptions) -> SamplerOptions:
    """The sampler as it runs for hiss: from the noise's own level rather than the preset's σ_max."""
    level = hiss.start_sigma(WINDOW, torch.zeros(1, dtype=torch.float64))
    return replace(sampler, sigma_max=max(level, 2 * sampler.sigma_min))


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
