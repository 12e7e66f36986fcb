"""Objective evaluation with the paper's protocols: degrade clean segments, restore, score, report.

Segments are 2^16-sample mono crops at 22.05 kHz (2.97 s) from a folder of clean audio, fixed by the seed
and scaled to the training level. Each (condition, method, segment) is one item whose scores are appended
to ``items.jsonl`` in the output folder as soon as its batch is done, so an interrupted run resumes
where it stopped. Reports: ``results.csv`` (per item), ``results.md`` (rows methods, columns conditions,
mean ± 95% confidence interval) and one bar chart PNG per metric. See docs/evaluation.md.

Metrics (``EvalConfig.metrics``): LSD, SI-SDR and SDR gain by default; ViSQOL (``perceptual``) and
note-onset F1 of transcriptions (``notes``) with the optional ``metrics`` extra. A cached item that lacks
an asked-for score is restored and scored again; its new scores replace the old ones.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cqtrestore import plot
from cqtrestore.aspade import aspade_declip
from cqtrestore.baselines import lpc_inpaint, noise_fill_bwe
from cqtrestore.data import fixed_crops, scan_audio
from cqtrestore.diffusion import Denoiser, SamplerOptions
from cqtrestore.guidance import GuidanceOptions
from cqtrestore.metrics import lsd, si_sdr
from cqtrestore.operators import Clip, Gap, LowPass, Operator, stack
from cqtrestore.pipeline import restore_average
from cqtrestore.quality import DEFAULT_QUALITY, QUALITIES, resolve
from cqtrestore.warmstart import classical_estimate

SEGMENT = 65536  # the paper's 2.97 s at 22.05 kHz
SAMPLE_RATE = 22050
TARGET_RMS = 0.057  # the training level (σ_data): segments are scaled to it
GAP_CONTEXT = 11025  # at least 0.5 s of context on each side of a gap
GAP_MARGIN = 1102  # inpainting scores are also taken inside the gap ± 50 ms
TASKS = ("bwe", "declip", "inpaint")
BASELINES = {
    "bwe": ("degraded", "noise-fill"),
    "declip": ("degraded", "a-spade"),
    "inpaint": ("degraded", "lpc"),
}
MODES = {"bwe": ("dc", "rg", "dc+rg"), "declip": ("rg", "dc+rg"), "inpaint": ("dc", "rg", "dc+rg")}
METRICS = {
    "lsd": "LSD",
    "si_sdr": "SI-SDR (dB)",
    "sdr_gain": "SDR gain (dB)",
    "gap_lsd": "LSD in gap ±50 ms",
    "gap_si_sdr": "SI-SDR in gap ±50 ms (dB)",
    "visqol": "ViSQOL MOS-LQO",
    "note_f1": "Note-onset F1",
    "gap_note_f1": "Note-onset F1 in gap ±50 ms",
}
# What --metric asks for -> the scores it adds to each item (inpainting: also the gap's, "gap_" + key).
SCORES = {"lsd": "lsd", "si-sdr": "si_sdr", "sdr-gain": "sdr_gain", "visqol": "visqol", "note-f1": "note_f1"}
DEFAULT_METRICS = ("lsd", "si-sdr", "sdr-gain")
GAP_SCORES = ("lsd", "si_sdr", "note_f1")  # the scores also taken inside an inpainting gap ± 50 ms
CACHE = "items.jsonl"
Progress = Callable[[int, int], None]  # (items done, items in all)


class EvalError(ValueError):
    """An evaluation that cannot run as asked (bad option, empty folder, foreign cache)."""


def methods_for(task: str) -> tuple[str, ...]:
    """Every method applicable to ``task``: baselines first, then CQT-Diff in each conditioning mode."""
    return BASELINES[task] + tuple(f"cqt-diff-{mode}" for mode in MODES[task])


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate: task, its conditions, methods, segments, quality preset (``steps`` overrides
    its step count), seed, batching, prior."""

    task: str
    cutoffs: tuple[float, ...] = (1000.0, 3000.0)  # bwe: lowpass cutoffs in Hz
    sdrs: tuple[float, ...] = (1.0, 10.0)  # declip: target clipping SDRs in dB
    gaps: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)  # inpaint: gap lengths in seconds
    methods: tuple[str, ...] = ()  # empty: every method applicable to the task
    segments: int = 8
    quality: str = DEFAULT_QUALITY  # the restore commands' presets (cqtrestore.quality): what users get
    steps: int | None = None  # None: the preset's
    seed: int = 0
    batch_size: int = 4
    checkpoint: str | None = None  # None: the default checkpoint
    xi: float = 0.35
    device: str = "cpu"
    metrics: tuple[str, ...] = DEFAULT_METRICS  # names of SCORES; empty: the default ones

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise EvalError(f"unknown task {self.task!r}: use one of {', '.join(TASKS)}")
        for name in ("cutoffs", "sdrs", "gaps", "methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        names = tuple(dict.fromkeys(m.lower().replace("_", "-") for m in self.metrics)) or DEFAULT_METRICS
        object.__setattr__(self, "metrics", names)
        unknown = [m for m in names if m not in SCORES]
        if unknown:
            raise EvalError(f"unknown metric {unknown[0]!r}: use {', '.join(SCORES)}")
        self._check_conditions()
        unknown = [m for m in self.methods if m not in methods_for(self.task)]
        if unknown:
            valid = ", ".join(methods_for(self.task))
            raise EvalError(f"method {unknown[0]!r} does not apply to {self.task}: use {valid}")
        for name, low in (("segments", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise EvalError(f"{name.replace('_', ' ')} must be an integer >= {low}, got {value!r}")
        if self.quality not in QUALITIES:
            raise EvalError(f"unknown quality {self.quality!r}: use one of {', '.join(QUALITIES)}")
        try:
            if self.steps is not None:
                SamplerOptions(steps=self.steps)
            GuidanceOptions(xi=self.xi)
        except ValueError as error:
            raise EvalError(str(error)) from None

    def _check_conditions(self) -> None:
        """Each task's condition list: non-empty, finite, in range."""
        if self.task == "bwe" and not all(0 < c < SAMPLE_RATE / 2 for c in self.cutoffs):
            raise EvalError(
                f"cutoffs must lie strictly between 0 and {SAMPLE_RATE // 2} Hz, got {self.cutoffs}"
            )
        if self.task == "declip" and not all(0 < s < 100 for s in self.sdrs):
            raise EvalError(f"clipping SDRs must lie between 0 and 100 dB, got {self.sdrs}")
        longest = (SEGMENT - 2 * GAP_CONTEXT) / SAMPLE_RATE
        if self.task == "inpaint" and not all(0 < g <= longest for g in self.gaps):
            raise EvalError(f"gap lengths must lie between 0 and {longest:.2f} s, got {self.gaps}")
        if not self.conditions:
            raise EvalError(f"no conditions to evaluate for {self.task}")

    @property
    def conditions(self) -> tuple[float, ...]:
        """The task's condition values: cutoffs (Hz), SDRs (dB) or gap lengths (s)."""
        return {"bwe": self.cutoffs, "declip": self.sdrs, "inpaint": self.gaps}[self.task]

    @property
    def method_list(self) -> tuple[str, ...]:
        """The methods to run, in report order."""
        return self.methods or methods_for(self.task)

    def fingerprint(self) -> dict:
        """The settings that cached scores depend on (conditions and methods are part of each key)."""
        names = ("task", "segments", "quality", "steps", "seed", "checkpoint", "xi")
        return {k: getattr(self, k) for k in names}


def condition_label(task: str, value: float) -> str:
    """A short column name: '1 kHz', 'SDR 10 dB', 'gap 100 ms'."""
    if task == "bwe":
        return f"{value / 1000:g} kHz"
    if task == "declip":
        return f"SDR {value:g} dB"
    return f"gap {value * 1000:g} ms"


@dataclass(frozen=True)
class Item:
    """One scored restoration: condition label, method, segment index and its scores."""

    condition: str
    method: str
    segment: int
    scores: dict[str, float]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.condition, self.method, self.segment)


@dataclass
class EvalResults:
    """All items (cached and new), how many were computed in this run, and the files written."""

    items: list[Item]
    computed: int
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[tuple[str, str, str], tuple[float, float, int]]:
        """(metric, method, condition) -> (mean, 95% CI half-width, n)."""
        groups: dict[tuple[str, str, str], list[float]] = {}
        for item in self.items:
            for metric, value in item.scores.items():
                groups.setdefault((metric, item.method, item.condition), []).append(value)
        return {key: mean_ci(values) for key, values in groups.items()}


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, 95% confidence half-width 1.96·s/√n (NaN for one value) and n of finite values."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan, 0
    half = 1.96 * data.std(ddof=1) / math.sqrt(data.size) if data.size > 1 else math.nan
    return float(data.mean()), float(half), int(data.size)


# ---------------------------------------------------------------- protocols


def load_segments(clean_dir: str | Path, count: int, seed: int) -> Tensor:
    """``count`` fixed 2^16-sample mono crops at 22.05 kHz (float64), each scaled to the training RMS."""
    try:
        files, _ = scan_audio(clean_dir)
    except ValueError as error:
        raise EvalError(str(error)) from None
    return to_training_rms(fixed_crops(files, SEGMENT, SAMPLE_RATE, count, seed).double())


def to_training_rms(crops: Tensor) -> Tensor:
    """Each crop (count, length) scaled to the training RMS; near-silent ones (RMS <= 1e-6) left alone."""
    rms = crops.pow(2).mean(dim=1, keepdim=True).sqrt()
    return torch.where(rms > 1e-6, crops * TARGET_RMS / rms.clamp_min(1e-6), crops)


def gap_operator(length_s: float, segment: int, seed: int) -> Gap:
    """A gap of ``length_s`` at a seeded random position with ≥ GAP_CONTEXT samples on both sides."""
    width = round(length_s * SAMPLE_RATE)
    rng = np.random.default_rng([seed, segment, width, 6])
    start = int(rng.integers(GAP_CONTEXT, SEGMENT - GAP_CONTEXT - width + 1))
    return Gap.from_samples([(start, start + width)], SAMPLE_RATE)


def operators_for(task: str, value: float, clean: Tensor, seed: int) -> list[Operator]:
    """One degradation per segment for a condition (lowpass shared; clip level and gap per segment)."""
    if task == "bwe":
        return [LowPass(value, SAMPLE_RATE)] * len(clean)
    if task == "declip":
        return [Clip.from_sdr(x, value) for x in clean]
    return [gap_operator(value, index, seed) for index in range(len(clean))]


# ---------------------------------------------------------------- scoring


def sdr(reference: Tensor, estimate: Tensor) -> Tensor:
    """Plain SDR in dB per item: 10·log10(‖x‖² / ‖x − x̂‖²)."""
    error = (reference - estimate).pow(2).sum(-1).clamp_min(1e-20)
    return 10 * torch.log10(reference.pow(2).sum(-1).clamp_min(1e-20) / error)


def metric_problems(metrics: Sequence[str]) -> dict[str, str]:
    """The asked-for metrics that cannot run here (their optional package is missing), with the reason."""
    from cqtrestore import notes, perceptual

    checks = {"visqol": perceptual.unavailable, "note-f1": notes.unavailable}
    problems = {m: checks[m]() for m in metrics if m in checks}
    return {m: reason for m, reason in problems.items() if reason}


def usable_metrics(config: EvalConfig) -> tuple[str, ...]:
    """The config's metrics that can run here (EvalError when none can)."""
    problems = metric_problems(config.metrics)
    usable = tuple(m for m in config.metrics if m not in problems)
    if not usable:
        raise EvalError("; ".join(problems.values()))
    return usable


def score_keys(task: str, metrics: Sequence[str]) -> set[str]:
    """The score keys each item of ``task`` gets from ``metrics``."""
    keys = {SCORES[m] for m in metrics}
    return keys | {f"gap_{k}" for k in keys if k in GAP_SCORES} if task == "inpaint" else keys


def gap_window(op: Operator) -> tuple[int, int] | None:
    """[lo, hi) samples of a gap operator's gaps ± 50 ms, or None for other operators."""
    if not (isinstance(op, Gap) and op.ranges):
        return None
    return max(op.ranges[0][0] - GAP_MARGIN, 0), min(op.ranges[-1][1] + GAP_MARGIN, SEGMENT)


def score(
    clean: Tensor,
    degraded: Tensor,
    restored: Tensor,
    operators: Sequence[Operator],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> list[dict]:
    """Per-item scores of ``metrics``: LSD, SI-SDR, SDR gain over the degraded input, ViSQOL, note-onset
    F1 (LSD, SI-SDR and F1 also inside gaps ± 50 ms)."""
    columns: dict[str, list[float]] = {}
    if "lsd" in metrics:
        columns["lsd"] = lsd(clean, restored).tolist()
    if "si-sdr" in metrics:
        columns["si_sdr"] = si_sdr(clean, restored).tolist()
    if "sdr-gain" in metrics:
        columns["sdr_gain"] = (sdr(clean, restored) - sdr(clean, degraded)).tolist()
    if "visqol" in metrics:
        from cqtrestore.perceptual import visqol

        columns["visqol"] = visqol(clean, restored, SAMPLE_RATE).tolist()
    rows: list[dict] = [{} for _ in operators]
    for key, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[key] = value
    for row, op, x, x_hat in zip(rows, operators, clean, restored, strict=True):
        window = gap_window(op)
        if window is not None and "lsd" in metrics:
            row["gap_lsd"] = lsd(x[None, slice(*window)], x_hat[None, slice(*window)]).item()
        if window is not None and "si-sdr" in metrics:
            row["gap_si_sdr"] = si_sdr(x[None, slice(*window)], x_hat[None, slice(*window)]).item()
        if "note-f1" in metrics:
            row.update(note_scores(x, x_hat, window))
    return rows


def note_scores(clean: Tensor, restored: Tensor, window: tuple[int, int] | None) -> dict[str, float]:
    """Note-onset F1 of the restored segment's transcription against the clean one's (and in ``window``)."""
    from cqtrestore.notes import onset_f1, transcribe

    threads = torch.get_num_threads()
    reference = transcribe(clean.cpu().numpy(), SAMPLE_RATE, threads)
    estimate = transcribe(restored.cpu().numpy(), SAMPLE_RATE, threads)
    scores = {"note_f1": onset_f1(reference, estimate)}
    if window is not None:
        seconds = (window[0] / SAMPLE_RATE, window[1] / SAMPLE_RATE)
        scores["gap_note_f1"] = onset_f1(reference, estimate, seconds)
    return scores


def run_method(
    method: str,
    y: Tensor,
    operators: Sequence[Operator],
    denoiser: Denoiser | None,
    config: EvalConfig,
    seed: int,
) -> Tensor:
    """Restore a batch y (batch, SEGMENT) degraded by ``operators`` (one per row) with ``method``."""
    if method == "degraded":
        return y
    if method == "noise-fill":
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([noise_fill_bwe(y[i : i + 1], op, generator) for i, op in enumerate(operators)])
    if method == "lpc":
        return torch.cat([lpc_inpaint(y[i : i + 1], op) for i, op in enumerate(operators)])
    if method == "a-spade":
        rows = [
            aspade_declip(row.numpy(), op.threshold, tolerance=op.tolerance, workers=torch.get_num_threads())
            for row, op in zip(y, operators, strict=True)
        ]
        return torch.from_numpy(np.stack(rows)).to(y)
    generator = torch.Generator(config.device).manual_seed(seed)
    observed = y.to(config.device, torch.float32)
    return sample_posterior(denoiser, stack(operators), observed, method, config, generator).cpu().to(y)


def sample_posterior(
    denoiser: Denoiser,
    operator: Operator,
    y: Tensor,
    method: str,
    config: EvalConfig,
    generator: torch.Generator,
) -> Tensor:
    """Restore y as ``cqtrestore bwe|inpaint|declip --quality Q --mode M`` would: the preset's sampler,
    warm start and guidance schedule, the method's conditioning mode, ``config.steps`` if set."""
    plan = resolve(config.quality, operator, config.xi)
    guidance = replace(plan.guidance, mode=method.removeprefix("cqt-diff-"))
    sampler = plan.sampler if config.steps is None else replace(plan.sampler, steps=config.steps)
    start = classical_estimate(operator, y) if plan.warm_start else None
    return restore_average(denoiser, operator, y, guidance, sampler, generator, start, plan.draws)


def sampler_description(config: EvalConfig) -> str:
    """The sampler of the CQT-Diff methods in words, for the reports."""
    value = config.conditions[0]
    operator = {
        "bwe": lambda: LowPass(value, SAMPLE_RATE),
        "declip": lambda: Clip(1.0),  # the plan depends on the kind of operator, not on its level
        "inpaint": lambda: gap_operator(value, SEGMENT, config.seed),
    }[config.task]()
    plan = resolve(config.quality, operator, config.xi)
    steps = plan.sampler.steps if config.steps is None else config.steps
    start = f"warm start at σ {plan.sampler.sigma_max:g}" if plan.warm_start else "from noise"
    draws = f", mean of {plan.draws} draws" if plan.draws > 1 else ""
    return f"quality {config.quality} ({plan.sampler.solver}, {steps} steps, {start}{draws})"


# ---------------------------------------------------------------- the run


def checkpoint_digest(config: EvalConfig) -> str:
    """sha256 of the prior's file ("" when no CQT-Diff method runs): a name can point at new weights."""
    if not any(m.startswith("cqt-diff") for m in config.method_list):
        return ""
    from cqtrestore.checkpoints import default_checkpoint, resolve
    from cqtrestore.download import sha256_file

    return sha256_file(resolve(config.checkpoint or default_checkpoint(), progress=False))


def read_cache(out_dir: Path, config: EvalConfig) -> dict[tuple[str, str, int], Item]:
    """Items already scored in ``out_dir`` (EvalError if it holds a different evaluation)."""
    settings, cache = out_dir / "config.json", out_dir / CACHE
    wanted, digest = json.loads(json.dumps(config.fingerprint())), checkpoint_digest(config)
    stored = json.loads(settings.read_text()) if settings.exists() else dict(wanted)
    previous = stored.pop("checkpoint_sha256", "")
    if previous and digest and previous != digest:
        raise EvalError(f"{out_dir} holds results of other weights under the name {config.checkpoint!r}")
    if stored != wanted:
        raise EvalError(f"{out_dir} holds results of a different evaluation: use another folder or empty it")
    settings.write_text(json.dumps({**wanted, "checkpoint_sha256": digest or previous}, indent=1))
    items, text = {}, cache.read_text() if cache.exists() else ""
    for line in text.splitlines():
        try:
            item = Item(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by an interruption
        items[item.key] = item
    if text and not text.endswith("\n"):  # drop the torn tail so new lines start cleanly
        cache.write_text("".join(json.dumps(asdict(item)) + "\n" for item in items.values()))
    return items


def load_denoiser(config: EvalConfig) -> Denoiser | None:
    """The prior to sample with, or None when no CQT-Diff method is asked for."""
    if not any(m.startswith("cqt-diff") for m in config.method_list):
        return None
    from cqtrestore.checkpoints import default_checkpoint, load_checkpoint

    net, info = load_checkpoint(config.checkpoint or default_checkpoint(), device=config.device)
    if info.sample_rate != SAMPLE_RATE:
        raise EvalError(
            f"checkpoint {info.name!r} runs at {info.sample_rate} Hz; eval needs {SAMPLE_RATE} Hz"
        )
    denoiser = info.denoiser(net).to(config.device).eval()
    for parameter in denoiser.parameters():
        parameter.requires_grad_(False)
    return denoiser


def run_eval(
    config: EvalConfig, clean_dir: str | Path, out_dir: str | Path, progress: Progress | None = None
) -> EvalResults:
    """Score every (condition, method, segment) not cached in ``out_dir``; write the reports there."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, metrics = read_cache(out_dir, config), usable_metrics(config)
    wanted = score_keys(config.task, metrics)
    clean = load_segments(clean_dir, config.segments, config.seed)
    total = len(config.conditions) * len(config.method_list) * config.segments
    denoiser, computed = None, 0
    with open(out_dir / CACHE, "a") as cache:
        for value in config.conditions:
            label = condition_label(config.task, value)
            operators = operators_for(config.task, value, clean, config.seed)
            degraded = torch.cat([op(x[None]) for op, x in zip(operators, clean, strict=True)])
            for method in config.method_list:
                todo = [i for i in range(config.segments) if not _complete(done, (label, method, i), wanted)]
                if todo and method.startswith("cqt-diff") and denoiser is None:
                    denoiser = load_denoiser(config)
                for first in range(0, len(todo), config.batch_size):
                    batch = todo[first : first + config.batch_size]
                    ops = [operators[i] for i in batch]
                    seed = zlib.crc32(f"{config.seed}|{label}|{method}|{batch[0]}".encode())
                    restored = run_method(method, degraded[batch], ops, denoiser, config, seed)
                    for i, scores in zip(
                        batch, score(clean[batch], degraded[batch], restored, ops, metrics), strict=True
                    ):
                        kept = done[(label, method, i)].scores if (label, method, i) in done else {}
                        done[(label, method, i)] = item = Item(label, method, i, {**kept, **scores})
                        cache.write(json.dumps(asdict(item)) + "\n")
                    cache.flush()
                    computed += len(batch)
                    if progress is not None:
                        progress(_count(done, config, wanted), total)
    items = [done[k] for k in _keys(config) if k in done]
    results = EvalResults(items, computed)
    results.files = write_reports(results, config, out_dir)
    return results


def _keys(config: EvalConfig) -> list[tuple[str, str, int]]:
    """Every item key of the config, in report order."""
    labels = [condition_label(config.task, v) for v in config.conditions]
    return [(c, m, i) for c in labels for m in config.method_list for i in range(config.segments)]


def _complete(done: dict[tuple[str, str, int], Item], key: tuple[str, str, int], wanted: set[str]) -> bool:
    """Whether the item is cached with every score asked for (else it is restored and scored again)."""
    return key in done and wanted <= done[key].scores.keys()


def _count(done: dict, config: EvalConfig, wanted: set[str]) -> int:
    return sum(1 for key in _keys(config) if _complete(done, key, wanted))


# ---------------------------------------------------------------- reports


def write_reports(results: EvalResults, config: EvalConfig, out_dir: Path) -> list[Path]:
    """results.csv, results.md and one bar chart per metric; returns the paths written."""
    paths = [
        write_csv(results, out_dir / "results.csv"),
        write_markdown(results, config, out_dir / "results.md"),
    ]
    for metric in metrics_of(results):
        paths.append(write_bar_chart(results, config, metric, out_dir / f"{metric}.png"))
    return paths


def metrics_of(results: EvalResults) -> list[str]:
    """The metrics present in the results, in METRICS order."""
    present = {m for item in results.items for m in item.scores}
    return [m for m in METRICS if m in present]


def write_csv(results: EvalResults, path: Path) -> Path:
    """One row per item: condition, method, segment and every metric (empty where not defined)."""
    metrics = metrics_of(results)
    lines = [",".join(["condition", "method", "segment", *metrics])]
    for item in results.items:
        values = [f"{item.scores[m]:.6g}" if m in item.scores else "" for m in metrics]
        lines.append(",".join([item.condition, item.method, str(item.segment), *values]))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_markdown(results: EvalResults, config: EvalConfig, path: Path) -> Path:
    """One table per metric: rows methods, columns conditions, cells mean ± 95% CI."""
    summary, labels = results.summary(), [condition_label(config.task, v) for v in config.conditions]
    text = [
        f"# {config.task} evaluation\n",
        f"{config.segments} segments of 2.97 s, seed {config.seed}, "
        f"CQT-Diff: {sampler_description(config)}, checkpoint {config.checkpoint or 'default'}.\n",
    ]
    for metric in metrics_of(results):
        text += [
            f"\n## {METRICS[metric]}\n",
            "| method | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for method in config.method_list:
            cells = [_cell(summary.get((metric, method, label))) for label in labels]
            text.append(f"| {method} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(text) + "\n")
    return path


def _cell(stats: tuple[float, float, int] | None) -> str:
    if stats is None or stats[2] == 0:
        return "—"
    mean, half, _ = stats
    return f"{mean:.2f}" if math.isnan(half) else f"{mean:.2f} ± {half:.2f}"


BAR_COLOURS = [(120, 120, 120), (230, 160, 60), (80, 160, 230), (90, 200, 120), (220, 90, 160)]


def write_bar_chart(results: EvalResults, config: EvalConfig, metric: str, path: Path) -> Path:
    """Grouped bars (conditions × methods) of the mean with 95% CI whiskers, as a PNG."""
    summary, labels = results.summary(), [condition_label(config.task, v) for v in config.conditions]
    methods = config.method_list
    stats = np.array(
        [[summary.get((metric, m, c), (math.nan, math.nan, 0))[:2] for m in methods] for c in labels]
    )  # (conditions, methods, 2)
    means, halves = np.nan_to_num(stats[..., 0]), np.nan_to_num(stats[..., 1])
    lo, hi = min(0.0, (means - halves).min()), max(0.0, (means + halves).max())
    hi = hi if hi > lo else lo + 1.0
    bar, height, top, base = 14, 240, 40, 300
    width = 40 + len(labels) * (len(methods) * bar + 30)
    rgb = np.full((base + 20 + 14 * len(methods), max(width, 420), 3), plot.BACKGROUND, np.uint8)

    def row(v: float) -> int:
        return int(round(top + (hi - v) / (hi - lo) * height))

    rgb[row(0.0), 20 : width - 10] = plot.TEXT_COLOUR
    for c, label in enumerate(labels):
        left = 40 + c * (len(methods) * bar + 30)
        for m in range(len(methods)):
            x0, a, b = left + m * bar, row(means[c, m]), row(0.0)
            rgb[min(a, b) : max(a, b) + 1, x0 + 2 : x0 + bar - 2] = BAR_COLOURS[m % len(BAR_COLOURS)]
            w0, w1 = row(means[c, m] + halves[c, m]), row(means[c, m] - halves[c, m])
            rgb[w0 : w1 + 1, x0 + bar // 2] = plot.TEXT_COLOUR
            rgb[[w0, w1], x0 + 4 : x0 + bar - 4] = plot.TEXT_COLOUR
        plot.draw_text(rgb, label, left, base - 6, scale=1)
    plot.draw_text(rgb, f"{METRICS[metric]}  {hi:.3g} TO {lo:.3g}".replace("±", "+-"), 10, 10, scale=2)
    for m, method in enumerate(methods):
        y = base + 14 + 14 * m
        rgb[y : y + 8, 20:28] = BAR_COLOURS[m % len(BAR_COLOURS)]
        plot.draw_text(rgb, method, 34, y, scale=1)
    plot.write_png(path, rgb)
    return path
