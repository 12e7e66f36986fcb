"""The Python API behind the commands: operators from user settings, checked jobs, the prior, reports.

The CLI parses strings and calls these; everything here raises ``ValueError`` (or ``AudioError`` /
``CheckpointError``, both ValueErrors) with one-line messages fit to show as they are.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cqtrestore import audio, detect, noise, units
from cqtrestore.blind import ESTIMATE_SLOPE_RANGE_DB, BlindLowPass
from cqtrestore.checkpoints import default_checkpoint, load_checkpoint
from cqtrestore.metrics import lsd, si_sdr
from cqtrestore.noise import Hiss
from cqtrestore.operators import Clip, Compose, Gap, LowPass, Operator
from cqtrestore.pipeline import WINDOW, FileReport, Progress, RestoreOptions, Restorer, gap_ranges, split_hiss
from cqtrestore.quality import DEFAULT_QUALITY, resolve

MODEL_RATE = 22050  # every bundled prior runs at 22.05 kHz
BLIND_START_HZ = 4000.0  # where a blind lowpass starts when the spectrum shows no cutoff
Say = Callable[[str], None]
Loader = Callable[[], np.ndarray]  # the whole input as (frames, channels) float32, read on demand


# ---------------------------------------------------------------- operators from user settings


def blind_lowpass(samples: np.ndarray, sample_rate: int) -> tuple[BlindLowPass, detect.CutoffEstimate | None]:
    """A blind lowpass for audio at ``sample_rate``, started where the cutoff detector finds the spectrum
    falling (``BLIND_START_HZ`` when it finds nothing) at the slope of that fall (its drop over the
    octaves to where it measured the floor), and told where that floor begins; with the detector's
    estimate. On 4 valid segments after a 3-kHz Kaiser FIR, starting at that slope (240 dB/octave)
    instead of 24 put the estimate within 25 Hz of the cutoff (it was 60-1200 Hz low)."""
    found = detect.estimate_cutoff(samples, sample_rate)
    highest = 0.45 * min(sample_rate, MODEL_RATE)
    if found is None or found.hz >= highest:
        return BlindLowPass(min(found.hz if found else BLIND_START_HZ, highest), sample_rate), found
    low, high = ESTIMATE_SLOPE_RANGE_DB
    octaves = math.log2(found.stopband_hz / found.hz)  # 0 when the edge sits at the floor's first bin
    slope = min(max(found.drop_db / octaves, low), high) if octaves > 0 else high
    stopband = found.stopband_hz if found.stopband_hz < highest else None
    return BlindLowPass(found.hz, sample_rate, slope_db=slope, stopband_hz=stopband), found


def lowpass_operator(cutoff: str, info: audio.AudioInfo, samples: Loader, say: Say) -> LowPass | BlindLowPass:
    """``--cutoff 3k``, ``auto`` (from the long-term spectrum) or ``blind`` (cutoff and slope estimated
    while sampling, starting from the detector's cutoff) -> a lowpass at the input's rate."""
    word = cutoff.strip().lower()
    if word == "blind":
        operator, found = blind_lowpass(samples(), info.sample_rate)
        say(
            f"blind lowpass: starting from {units.format_frequency(round(operator.cutoff_hz))}, "
            f"{operator.slope_db:.0f} dB/octave "
            + (f"({found.describe()})" if found else "(no cutoff found in the spectrum)")
        )
        return operator
    if word == "auto":
        found = detect.estimate_cutoff(samples(), info.sample_rate)
        if found is None:
            raise ValueError(f"{info.path.name}: no lowpass cutoff found in its spectrum; give --cutoff")
        say(f"auto cutoff: {found.describe()}")
        hz = round(found.hz)
    else:
        hz = units.parse_frequency(cutoff)
    limit = min(info.sample_rate, MODEL_RATE) / 2
    if not 0 < hz < limit:
        raise ValueError(
            f"cutoff {units.format_frequency(hz)} must lie between 0 and {units.format_frequency(limit)} "
            f"(the Nyquist frequency of the {'model' if limit == MODEL_RATE / 2 else 'input'})"
        )
    return LowPass(hz, info.sample_rate)


def gap_operator(gaps: Sequence[str], info: audio.AudioInfo, samples: Loader, say: Say) -> Gap:
    """``--gap 1.2:1.5`` (repeatable) or ``auto`` (digital-silence dropouts) -> a Gap at the input's rate."""
    if [g.strip().lower() for g in gaps] == ["auto"]:
        intervals = detect.find_dropouts(samples(), info.sample_rate)
        if not intervals:
            raise ValueError(f"{info.path.name}: no digital-silence dropouts found; give --gap START:END")
        say("auto gaps: " + ", ".join(f"{units.format_time(a)}-{units.format_time(b)}" for a, b in intervals))
    else:
        intervals = sorted(units.parse_gap(text) for text in gaps)
    for start, end in intervals:
        if end > info.duration:
            raise ValueError(
                f"gap {units.format_time(start)}-{units.format_time(end)} ends after the file "
                f"({units.format_time(info.duration)})"
            )
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        if start < end:
            raise ValueError(f"gaps overlap at {units.format_time(start)}: give each missing range once")
    limit = audio.max_gap_samples(WINDOW, audio.DEFAULT_OVERLAP, audio.DEFAULT_CONTEXT) / MODEL_RATE
    for start, end in intervals:
        if end - start > limit:
            raise ValueError(
                f"gap {units.format_time(start)}-{units.format_time(end)} is {end - start:.3f} s long; one "
                f"window holds at most {limit:.3f} s of gap with context on both sides"
            )
    return Gap(intervals, info.sample_rate)


def clip_operator(
    threshold: str, sdr_db: float | None, info: audio.AudioInfo, samples: Loader, say: Say
) -> Clip:
    """``--threshold 0.3|auto`` (of a clipped input) or ``--sdr 1`` (clip the clean input to that SDR)."""
    if sdr_db is not None:
        clip = Clip.from_sdr(samples(), sdr_db)
        say(f"clipping the input at |x| = {clip.threshold:.4g} for {sdr_db:g} dB SDR")
        return clip
    if threshold.strip().lower() != "auto":
        value = _positive_float(threshold, "clipping threshold")
        return Clip(value)
    found = detect.detect_clipping(samples())
    if found is None:
        raise ValueError(f"{info.path.name}: does not look clipped; give --threshold, or --sdr to simulate")
    say(f"auto threshold: {found.describe()}")
    return Clip(found.threshold)


def hiss_operator(
    noise_level: float | None,
    strength: float,
    simulate: bool,
    info: audio.AudioInfo,
    samples: Loader,
    say: Say,
) -> Hiss:
    """``--noise-level -50`` (white, dBFS RMS) or the noise estimated from the input (minimum statistics),
    times ``--strength``; ``--simulate`` adds that noise to a clean input, so it needs the level."""
    if not (math.isfinite(strength) and strength > 0):
        raise ValueError(f"--strength must be a number > 0, got {strength:g}")
    if noise_level is not None:
        return Hiss(Hiss.white(noise_level, info.sample_rate).estimate, info.sample_rate, strength)
    if simulate:
        raise ValueError("--simulate adds noise to a clean input: give its level with --noise-level")
    estimate = noise.estimate_noise(samples(), info.sample_rate)
    say(f"estimated {estimate.describe()}")
    return Hiss(estimate, info.sample_rate, strength)


def composite_operator(
    lowpass: str | None,
    clip: str | None,
    gaps: Sequence[str],
    info: audio.AudioInfo,
    samples: Loader,
    say: Say,
    hiss: str | None = None,
) -> Operator:
    """``restore``: clipping, then lowpass, then gaps, then hiss, as given (one operator if only one is).
    ``hiss``: ``auto`` (estimated from the input) or a level in dBFS."""
    parts: list[Operator] = []
    if clip is not None:
        parts.append(clip_operator(clip, None, info, samples, say))
    if lowpass is not None:
        parts.append(lowpass_operator(lowpass, info, samples, say))
    if gaps:
        if lowpass is not None and lowpass.strip().lower() == "blind":
            raise ValueError(
                "--lowpass blind cannot be combined with --gap: its filter is estimated on gap-free windows; "
                "estimate it first (bwe --cutoff blind), then give its cutoff"
            )
        parts.append(gap_operator(gaps, info, samples, say))
    if hiss is not None:
        word = hiss.strip().lower()
        level = None if word == "auto" else _negative_db(hiss)
        parts.append(hiss_operator(level, 1.0, False, info, samples, say))
    if not parts:
        raise ValueError("nothing to restore: give at least one of --lowpass, --clip, --gap, --hiss")
    return parts[0] if len(parts) == 1 else Compose(*parts)


def _negative_db(text: str) -> float:
    """A hiss level such as -50 (dBFS)."""
    try:
        value = float(text.strip().lower().removesuffix("dbfs").removesuffix("db"))
    except ValueError:
        raise ValueError(f"--hiss takes auto or a level in dBFS such as -50, got {text!r}") from None
    return value


def _positive_float(text: str, what: str) -> float:
    """A finite number > 0 from user text."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}: expected a number such as 0.3") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {text!r}")
    return value


# ---------------------------------------------------------------- options and the prior


def restore_options(
    operator: Operator,
    mode: str | None = None,
    xi: float = 0.35,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    overlap_s: float = 0.37,
    device: str = "auto",
    quality: str = DEFAULT_QUALITY,
    draws: int | None = None,
) -> RestoreOptions:
    """Validated options: the ``quality`` preset for the operator (``cqtrestore.quality``), with ``mode``,
    ``steps`` and ``draws`` overriding its guidance mode, step count and draws per window where given.
    A chain that ends in hiss after lowpasses and gaps (``split_hiss``) has its hiss removed first with
    the ``denoise`` preset; the preset of the rest, with the overrides, then restores the result."""
    device = pick_device(device)
    denoise_first, split = None, split_hiss(operator)
    if split is not None:
        denoise_first, operator = resolve(quality, split[0], xi), split[1]
    plan = resolve(quality, operator, xi)
    guidance = replace(plan.guidance, mode=mode) if mode else plan.guidance
    if "dc" in guidance.mode.split("+") and not operator.has_projection:
        raise ValueError(f"{operator.describe()} has no data-consistency step: use --mode rg")
    if not 0 <= overlap_s <= WINDOW / 2 / MODEL_RATE:
        raise ValueError(f"overlap must lie between 0 and {WINDOW / 2 / MODEL_RATE:.2f} s, got {overlap_s}")
    return RestoreOptions(
        guidance=guidance,
        sampler=plan.sampler if steps is None else replace(plan.sampler, steps=steps),
        warm_start=plan.warm_start,
        draws=plan.draws if draws is None else draws,
        denoise_first=denoise_first,
        seed=seed,
        batch_size=batch_size
        if batch_size is not None
        else (8 if device == "cuda" else 1),  # CPU: 1 is fastest
        overlap=round(overlap_s * MODEL_RATE),
        device=device,
    )


def pick_device(device: str) -> str:
    """'auto' -> CUDA when present, else CPU; 'cuda' without CUDA is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def load_restorer(checkpoint: str | None, device: str, say: Say) -> Restorer:
    """The prior named by ``checkpoint`` (None: the default), on ``device``, ready to restore."""
    net, info = load_checkpoint(checkpoint or default_checkpoint(), device=device)
    if not info.is_trained:
        say(
            f"[bold yellow]WARNING:[/] checkpoint {info.name!r} is an UNTRAINED test network: "
            "the output is noise"
        )
    return Restorer(info.denoiser(net), sample_rate=info.sample_rate, device=device)


# ---------------------------------------------------------------- jobs


@dataclass
class Job:
    """One checked restoration: input, output, operator; with --simulate, the clean reference too."""

    input: Path
    output: Path
    operator: Operator
    info: audio.AudioInfo
    clean: Path | None = None
    plot: Path | None = None

    def run(self, restorer: Restorer, options: RestoreOptions, progress: Progress | None = None) -> list[str]:
        """Restore, then report (and score against the clean input with --simulate, and plot)."""
        began = time.perf_counter()
        report = restorer.restore_file(self.input, self.output, self.operator, options, progress)
        lines = [_summary(self, report, time.perf_counter() - began)]
        if self.clean is not None:
            lines += score_lines(self.clean, self.input, self.output)
        if self.plot is not None:
            _plot(self, report)
            lines.append(f"plot: {self.plot}")
        return lines


def prepare(
    input: Path,
    output: Path | None,
    force: bool,
    simulate: bool,
    plot: Path | None,
    build_operator: Callable[[audio.AudioInfo, Loader], Operator],
    say: Say,
) -> Job:
    """Check the input and output paths, build the operator, and with ``simulate`` degrade the input."""
    info = audio.probe(input)
    audio.check_finite(input)
    loaded: list[np.ndarray] = []

    def samples() -> np.ndarray:
        if not loaded:
            loaded.append(sf.read(input, dtype="float32", always_2d=True)[0])
        return loaded[0]

    output = Path(output) if output is not None else default_output(input)
    check_output(input, output, force)
    if plot is not None:
        check_output(input, plot, force)
    _note_level(input, info, say)
    operator = build_operator(info, samples)
    if not simulate:
        return Job(input, output, operator, info, plot=plot)
    if isinstance(operator, BlindLowPass):
        raise ValueError("--simulate needs a known degradation to apply; --cutoff blind has none")
    degraded = output.with_name(f"{input.stem}.degraded{output.suffix}")
    check_output(input, degraded, force)
    write_degraded(samples(), info, operator, degraded)
    say(f"simulated: {operator.describe()} -> {degraded}")
    return Job(degraded, output, operator, audio.probe(degraded), clean=input, plot=plot)


def default_output(input: Path) -> Path:
    """IN_STEM.restored.EXT beside the input."""
    return input.with_name(f"{input.stem}.restored{input.suffix}")


def check_output(input: Path, output: Path, force: bool) -> None:
    """Refuse to write over the input, into a missing or unwritable folder, or over a file without force."""
    if output.resolve() == input.resolve() or (output.exists() and os.path.samefile(output, input)):
        raise ValueError(f"{output}: the output would overwrite the input; choose another --output")
    folder = output.resolve().parent
    if not folder.is_dir():
        raise ValueError(f"{output}: the output folder {folder} does not exist")
    if not writable(folder):
        raise ValueError(f"{output}: the output folder {folder} is not writable")
    if output.is_dir():
        raise ValueError(f"{output}: is a directory; give a file name")
    if output.exists() and not force:
        raise ValueError(f"{output} exists: pass --force to overwrite it")


def writable(folder: Path) -> bool:
    """Whether files can be created in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def _note_level(input: Path, info: audio.AudioInfo, say: Say) -> None:
    """Say when a float file goes above 0 dBFS (accepted: the output keeps the level)."""
    level = audio.peak(input)
    if level > 1.0:
        say(f"note: {input.name} peaks at {20 * np.log10(level):+.1f} dBFS (above full scale); accepted")


def write_degraded(clean: np.ndarray, info: audio.AudioInfo, operator: Operator, path: Path) -> None:
    """Apply the operator to every channel of the clean input and write the result atomically."""
    x = torch.from_numpy(np.ascontiguousarray(clean.T, dtype=np.float64))
    operator = operator.at_rate(info.sample_rate)
    if isinstance(operator, Hiss):  # the noise is the degradation: draw it (seed 0) with its spectrum
        white = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        y = operator.noise(white).numpy().T + clean
    else:
        y = operator(x).numpy().T
    y = y.astype(np.float32)
    fmt, subtype = audio.output_format(info, path)
    with audio.AtomicAudioWriter(path, info.sample_rate, info.channels, fmt, subtype) as writer:
        writer.write(y)


def score_lines(clean: Path, degraded: Path, restored: Path) -> list[str]:
    """LSD and SI-SDR of the degraded and restored files against the clean one (channels averaged)."""
    reference, _ = sf.read(clean, dtype="float64", always_2d=True)
    lines = []
    for label, path in (("degraded", degraded), ("restored", restored)):
        estimate, _ = sf.read(path, dtype="float64", always_2d=True)
        x, y = torch.from_numpy(reference.T), torch.from_numpy(estimate.T)
        distance, ratio = float(lsd(x, y).mean()), float(si_sdr(x, y).mean())
        lines.append(f"{label:>9}: LSD {distance:.3f}   SI-SDR {ratio:6.2f} dB")
    return lines


def _summary(job: Job, report: FileReport, seconds: float) -> str:
    """One line: what was written and how."""
    return (
        f"wrote {job.output}: {report.operator}; {report.guidance.mode}"
        f"{f' xi={report.guidance.xi:g}' if 'rg' in report.guidance.mode else ''}; "
        f"{report.describe_sampler()}; "
        f"{report.windows_restored}/{report.windows} windows restored in {seconds:.1f} s"
        + (f"; {report.clipped_samples} samples clipped to full scale" if report.clipped_samples else "")
    )


def _plot(job: Job, report: FileReport) -> None:
    """Spectrograms of the input and the output with the missing regions and the cutoff marked."""
    from cqtrestore import plot

    panels = []
    for title, path in (("input", job.input), ("restored", job.output)):
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        panels.append((title, samples.mean(axis=1), rate))
    gaps = [(a / job.info.sample_rate, b / job.info.sample_rate) for a, b in gap_ranges(job.operator)]
    parts = job.operator.operators if isinstance(job.operator, Compose) else (job.operator,)
    cutoff = next((part.cutoff_hz for part in parts if isinstance(part, LowPass | BlindLowPass)), None)
    blind = next((part for part in parts if isinstance(part, BlindLowPass)), None)
    response = None
    if blind is not None:  # the estimated |H(f)|, drawn over the input's panel
        n_fft = 8192
        gain = blind.response(n_fft).detach().numpy()
        response = (np.fft.rfftfreq(n_fft, 1 / blind.sample_rate), 20 * np.log10(np.maximum(gain, 1e-12)))
        label = f"input; estimated lowpass {blind.cutoff_hz:.0f} Hz, {blind.slope_db:.0f} dB/oct (curve)"
        panels[0] = (label, *panels[0][1:])
    plot.plot_comparison(job.plot, panels, regions=gaps, cutoff_hz=cutoff, response=response)


# ---------------------------------------------------------------- the array API


def restore(
    samples: np.ndarray,
    sample_rate: int,
    operator: Operator,
    checkpoint: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    mode: str | None = None,
    xi: float = 0.35,
    device: str = "auto",
    batch_size: int | None = None,
    quality: str = DEFAULT_QUALITY,
) -> np.ndarray:
    """Restore audio (frames,) or (frames, channels) at ``sample_rate`` degraded by ``operator``, with the
    ``quality`` preset (``steps`` and ``mode`` override its own)."""
    options = restore_options(operator, mode, xi, steps, seed, batch_size, device=device, quality=quality)
    restorer = load_restorer(checkpoint, options.device, lambda message: None)
    return restorer.restore(samples, sample_rate, operator, options)
