"""Command-line interface: parses, validates and calls the library; holds no algorithm."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from cqtrestore import __version__

app = typer.Typer(
    help="Restore damaged music recordings with a CQT-Diff diffusion prior.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # one-line errors stay on one line


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def version() -> None:
    """Print the installed cqtrestore version."""
    typer.echo(__version__)


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="Folder of training audio (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint, EMA weights, logs."),
    preset: str = typer.Option(
        "small",
        help="Network preset: paper, small, small-shallow, cpu-attn, cpu-dilated, cpu-wide, cpu-gate, "
        "cpu-fine, cpu-mask, debug.",
    ),
    steps: int = typer.Option(100_000, help="Total optimiser steps (a resumed run continues to this)."),
    batch_size: int = typer.Option(4, help="Crops per step."),
    segment: int = typer.Option(65536, help="Crop length in samples at the model rate."),
    lr: float = typer.Option(2e-4, help="Adam learning rate after warm-up."),
    warmup: int = typer.Option(1000, help="Learning-rate warm-up steps."),
    ema: float = typer.Option(0.9999, help="EMA decay of the exported weights."),
    valid_dir: Path | None = typer.Option(
        None, help="Separate validation folder (else a held-out fraction)."
    ),
    heldout_dir: Path | None = typer.Option(
        None, help="A second validation folder (e.g. a timbre never trained on), logged as 'heldout'."
    ),
    valid_fraction: float = typer.Option(0.05, help="Fraction of the audio held out for validation."),
    valid_crops: int = typer.Option(16, help="Fixed validation crops (loss at 8 noise levels each save)."),
    seed: int = typer.Option(0, help="Seed of crops, noise levels and initial weights."),
    log_every: int = typer.Option(50, help="Steps between log lines."),
    save_every: int = typer.Option(500, help="Steps between validation and checkpoints."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: its default)."),
    workers: int = typer.Option(0, help="Processes reading crops in the background (0: none)."),
    sigma_distribution: str = typer.Option(
        "rho", help="Training noise levels: rho (the paper's) or lognormal (EDM's, ln σ ~ N(p_mean, p_std²))."
    ),
    precondition: str = typer.Option(
        "scalar",
        help="scalar (the paper's EDM σ_data) or spectral (σ_data² -> the training data's power spectrum, "
        "measured at the start; an untrained network is then the data's Gaussian prior).",
    ),
    loss: str = typer.Option(
        "spectral",
        help="spectral (λ per frequency, paper eq. 6) or local (also weighted toward the quiet "
        "time-frequency cells of the noisy input; spectral preconditioning only; the minimiser is "
        "still the posterior mean).",
    ),
    spectrum_statistic: str = typer.Option(
        "mean",
        help="How a spectral run measures the data spectrum: mean (mean power) or root ((mean of √power)², "
        "nearer a typical frame's power; piano's highs live in a few loud frames).",
    ),
    loss_statistic: str = typer.Option(
        "",
        help="Weigh the loss per frequency by the spectrum of this statistic (mean or root) instead of the "
        "preconditioning's (--spectrum-statistic); spectral only. The minimiser is the same.",
    ),
    edge_taper: int = typer.Option(
        0, help="Samples of raised-cosine fade at both ends of every crop (0: none; use with spectral)."
    ),
    augment: bool = typer.Option(
        False, "--augment", help="Random microphone response, EQ tilt and room on every training crop."
    ),
    gain_db: float = typer.Option(3.0, help="Random level change of every crop, ± this many dB."),
    sigma_min: float = typer.Option(1e-6, help="Lowest training noise level."),
    sigma_max: float = typer.Option(10.0, help="Highest training noise level."),
    rho: float = typer.Option(10.0, help="ρ of the rho noise-level distribution."),
    p_mean: float = typer.Option(-1.2, help="Mean of ln σ with --sigma-distribution lognormal."),
    p_std: float = typer.Option(1.2, help="Standard deviation of ln σ with --sigma-distribution lognormal."),
    focus_share: float = typer.Option(
        0.0,
        help="Share of the noise levels drawn log-uniform from --focus-min to --focus-max instead (0: none).",
    ),
    focus_min: float = typer.Option(1e-4, help="Lowest focused noise level (with --focus-share)."),
    focus_max: float = typer.Option(
        0.3, help="Highest focused noise level (the restore presets start at σ ≤ 0.2)."
    ),
    sample_every: int = typer.Option(
        0,
        help="Steps between an unconditional and a 3 kHz bandwidth-extension sample in OUT/samples (0: off).",
    ),
    sample_steps: int = typer.Option(35, help="Sampler steps of those samples."),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (CUDA GPUs only)."),
    compile_net: bool = typer.Option(
        False, "--compile", help="torch.compile the network (helps mainly on GPUs)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start a new run from these weights (checkpoint name or .safetensors of the same preset, "
        "or of one it grows from: cpu-gate or cpu-fine from cpu-dilated).",
    ),
) -> None:
    """Train a diffusion prior on a folder of audio (EDM loss, Adam, EMA; resumable).

    Multi-GPU: torchrun --nproc_per_node N -m cqtrestore train ... (--batch-size is the global batch)."""
    import torch

    from cqtrestore.data import DataError
    from cqtrestore.train import TrainConfig, TrainError
    from cqtrestore.train import train as run_training

    try:
        config = TrainConfig(
            preset=preset,
            steps=steps,
            batch_size=batch_size,
            segment=segment,
            lr=lr,
            warmup_steps=warmup,
            ema=ema,
            valid_fraction=valid_fraction,
            valid_crops=valid_crops,
            seed=seed,
            log_every=log_every,
            save_every=save_every,
            threads=threads,
            workers=workers,
            sigma_distribution=sigma_distribution,
            precondition=precondition,
            loss=loss,
            spectrum_statistic=spectrum_statistic,
            loss_statistic=loss_statistic,
            edge_taper=edge_taper,
            augment=augment,
            gain_db=gain_db,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            rho=rho,
            p_mean=p_mean,
            p_std=p_std,
            focus_share=focus_share,
            focus_min=focus_min,
            focus_max=focus_max,
            sample_every=sample_every,
            sample_steps=sample_steps,
            bf16=bf16,
            compile=compile_net,
        )
    except ValueError as error:
        raise fail(str(error)) from None
    if compile_net and not torch.cuda.is_available():
        err.print("warning: --compile mainly helps on GPUs; on a CPU the first steps are slow to compile")

    def show(record: dict) -> None:
        if record.get("event") == "start":
            skipped = ", ".join(f"{n} {why}" for why, n in record["skipped"].items() if n)
            err.print(
                f"{record['train_files']} training and {record['valid_files']} validation files"
                + (f" (skipped: {skipped})" if skipped else "")
                + f", {record['parameters']:,} parameters, {record['processes']} process(es)"
                + (f"; started from {record['init']}" if "init" in record else "")
            )
        elif "threads" in record:
            err.print(f"step {record['step']:>7}  now on {record['threads']} thread(s) (RUN/threads)")
        elif "loss" in record:
            err.print(f"step {record['step']:>7}  loss {record['loss']:.4f}  {record['it_per_s']:.2f} it/s")
        elif "valid" in record or "heldout" in record:
            split = "valid" if "valid" in record else "heldout"
            err.print(
                f"step {record['step']:>7}  {split} "
                + "  ".join(f"{k}:{v:.3f}" for k, v in record[split].items())
            )

    try:
        path = run_training(
            config,
            data_dir,
            out,
            resume=resume,
            on_log=show,
            valid_dir=valid_dir,
            heldout_dir=heldout_dir,
            init=init,
        )
    except (DataError, TrainError, FileExistsError) as error:
        raise fail(str(error)) from None
    if torch.distributed.is_initialized():  # under torchrun: every rank got here, only rank 0 reports
        rank = torch.distributed.get_rank()
        torch.distributed.destroy_process_group()
        if rank:
            return
    err.print(f"checkpoint: {path}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder written by 'cqtrestore train'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file."),
    fp32: bool = typer.Option(False, "--fp32", help="Keep float32 (default: float16, half the size)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Export a run's EMA weights as a self-describing safetensors checkpoint."""
    from cqtrestore.train import export_run

    if not (run / "checkpoint.pt").is_file():
        raise fail(f"{run}: no checkpoint.pt (not a training run folder?)")
    if out.exists() and not force:
        raise fail(f"{out} exists: pass --force to overwrite it")
    metadata = export_run(run, out, half=not fp32)
    err.print(f"wrote {out} ({metadata['preset']}, step {metadata['step']})")


# ------------------------------------------------------------------ restoration commands

INPUT = typer.Argument(
    ...,
    help="Audio file to restore (WAV, FLAC, OGG, MP3; any rate, any channels), or a folder or quoted "
    "glob ('recordings/**/*.wav') to restore every audio file in it.",
)
OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="Output file (default: IN_STEM.restored.EXT beside the input; never the input); for a folder, the "
    "output folder where the input tree is mirrored (default: FOLDER.restored beside it).",
)
CHECKPOINT = typer.Option(
    None,
    "--checkpoint",
    help="Prior: a name from 'cqtrestore checkpoints list', a .safetensors/.pt path, hf://REPO/FILE[@REV] or "
    "https://... (default: the bundled piano prior).",
)
QUALITY = typer.Option(
    "balanced",
    "--quality",
    help="fast, balanced or best: sampler, steps, warm start and guidance per task (best: the paper's "
    "sampler, T = 35 from noise; balanced and fast: a few steps from the classical estimate).",
)
STEPS = typer.Option(
    None, "--steps", help="Sampler steps T, overriding the --quality preset's (the paper: 35)."
)
DRAWS = typer.Option(
    None,
    "--draws",
    help="Posterior draws per window, averaged (1 to 16; default per task from --quality): closer to the "
    "posterior mean, so less sampling noise and a better SI-SDR, at that many times the sampling time.",
)
MODE = typer.Option(
    None,
    "--mode",
    help="Conditioning: dc, rg or dc+rg (default per task: bwe dc, inpaint dc+rg, declip dc+rg).",
)
XI = typer.Option(0.35, "--xi", help="Reconstruction-guidance step xi' (paper: 0.35).")
SEED = typer.Option(
    0,
    "--seed",
    help="Random seed (same seed, batch size and device: same output). In a folder each file's seed comes "
    "from this and the file's path relative to the folder, so it does not depend on the other files.",
)
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
BATCH = typer.Option(
    None, "--batch-size", help="Windows (x channels) restored together (default: 1 on CPU, 8 on CUDA)."
)
OVERLAP = typer.Option(0.37, "--overlap", help="Crossfade between 2.97-s windows, in seconds.")
FORCE = typer.Option(
    False,
    "--force",
    "--overwrite",
    help="Overwrite an existing output file; for a folder, redo outputs already complete.",
)
FORMAT = typer.Option(
    None, "--format", help="Folder input: write every output in this format (wav, flac, ogg, aiff)."
)
REPORT = typer.Option(
    None, "--report", help="Folder input: also write the summary and every file's outcome as JSON here."
)
QUIET = typer.Option(False, "--quiet", "-q", help="Print only errors (and, for a folder, the final summary).")
SIMULATE = typer.Option(
    False,
    "--simulate",
    help="Take the input as clean: degrade it first (also written, as IN_STEM.degraded.EXT), restore, and "
    "print LSD and SI-SDR of the degraded and restored audio against it.",
)
PLOT = typer.Option(None, "--plot", help="Also write a PNG with spectrograms of input and output.")


@dataclass(frozen=True)
class _Common:
    """The options every restoration command shares, as typed."""

    input: Path
    output: Path | None
    checkpoint: str | None
    quality: str
    steps: int | None
    draws: int | None
    mode: str | None
    xi: float
    seed: int
    device: str
    batch_size: int | None
    overlap: float
    force: bool
    quiet: bool
    simulate: bool
    plot: Path | None
    format: str | None
    report: Path | None


@app.command()
def bwe(
    input: Path = INPUT,
    cutoff: str = typer.Option(
        ...,
        "--cutoff",
        help="Cutoff of the input's lowpass: 3k, 3000, 3.5kHz, auto (found in the spectrum) or blind "
        "(an unknown filter: cutoff and slope estimated while sampling, BABE).",
    ),
    output: Path | None = OUTPUT,
    checkpoint: str | None = CHECKPOINT,
    quality: str = QUALITY,
    steps: int | None = STEPS,
    draws: int | None = DRAWS,
    mode: str | None = MODE,
    xi: float = XI,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int | None = BATCH,
    overlap: float = OVERLAP,
    force: bool = FORCE,
    quiet: bool = QUIET,
    simulate: bool = SIMULATE,
    plot: Path | None = PLOT,
    format: str | None = FORMAT,
    report: Path | None = REPORT,
) -> None:
    """Bandwidth extension: the input was lowpassed; regenerate the missing highs."""
    from cqtrestore import tasks

    common = _Common(**_common(locals()))
    _run(
        common,
        lambda info, samples: tasks.lowpass_operator(cutoff, info, samples, _say(common)),
        {"task": "bwe", "cutoff": cutoff},
    )


@app.command()
def inpaint(
    input: Path = INPUT,
    gap: list[str] = typer.Option(
        ...,
        "--gap",
        help="Missing time range START:END in seconds (1.2:1.5), or START-END with clock times "
        "(1:02.5-1:03.1); repeat for several; 'auto' finds digital-silence dropouts.",
    ),
    output: Path | None = OUTPUT,
    checkpoint: str | None = CHECKPOINT,
    quality: str = QUALITY,
    steps: int | None = STEPS,
    draws: int | None = DRAWS,
    mode: str | None = MODE,
    xi: float = XI,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int | None = BATCH,
    overlap: float = OVERLAP,
    force: bool = FORCE,
    quiet: bool = QUIET,
    simulate: bool = SIMULATE,
    plot: Path | None = PLOT,
    format: str | None = FORMAT,
    report: Path | None = REPORT,
) -> None:
    """Inpainting: fill missing time ranges (up to about 1.5 s each) from their context."""
    from cqtrestore import tasks

    common = _Common(**_common(locals()))
    _run(
        common,
        lambda info, samples: tasks.gap_operator(gap, info, samples, _say(common)),
        {"task": "inpaint", "gap": list(gap)},
    )


@app.command()
def declip(
    input: Path = INPUT,
    threshold: str = typer.Option(
        "auto", "--threshold", help="Clipping level of the input (0.3), or auto to detect it."
    ),
    sdr: float | None = typer.Option(
        None,
        "--sdr",
        help="Paper protocol: clip the (clean) input to this SDR in dB, then restore; implies --simulate.",
    ),
    output: Path | None = OUTPUT,
    checkpoint: str | None = CHECKPOINT,
    quality: str = QUALITY,
    steps: int | None = STEPS,
    draws: int | None = DRAWS,
    mode: str | None = MODE,
    xi: float = XI,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int | None = BATCH,
    overlap: float = OVERLAP,
    force: bool = FORCE,
    quiet: bool = QUIET,
    simulate: bool = SIMULATE,
    plot: Path | None = PLOT,
    format: str | None = FORMAT,
    report: Path | None = REPORT,
) -> None:
    """Declipping: reconstruct the peaks of a hard-clipped recording."""
    from cqtrestore import tasks

    common = _Common(**{**_common(locals()), "simulate": simulate or sdr is not None})
    _run(
        common,
        lambda info, samples: tasks.clip_operator(threshold, sdr, info, samples, _say(common)),
        {"task": "declip", "threshold": threshold, "sdr": sdr},
    )


@app.command()
def denoise(
    input: Path = INPUT,
    noise_level: float | None = typer.Option(
        None,
        "--noise-level",
        help="The hiss's level in dBFS RMS (e.g. -50), taken as white; default: estimated from the "
        "input's quiet moments.",
    ),
    strength: float = typer.Option(
        1.0, "--strength", help="Scale the noise estimate's amplitude (0.5: remove less, 2: more)."
    ),
    output: Path | None = OUTPUT,
    checkpoint: str | None = CHECKPOINT,
    quality: str = QUALITY,
    steps: int | None = STEPS,
    draws: int | None = DRAWS,
    mode: str | None = MODE,
    xi: float = XI,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int | None = BATCH,
    overlap: float = OVERLAP,
    force: bool = FORCE,
    quiet: bool = QUIET,
    simulate: bool = SIMULATE,
    plot: Path | None = PLOT,
    format: str | None = FORMAT,
    report: Path | None = REPORT,
) -> None:
    """Hiss removal: stationary noise, estimated from the quiet moments (or given), taken out by the prior."""
    from cqtrestore import tasks

    common = _Common(**_common(locals()))
    _run(
        common,
        lambda info, samples: tasks.hiss_operator(
            noise_level, strength, simulate, info, samples, _say(common)
        ),
        {"task": "denoise", "noise_level": noise_level, "strength": strength},
    )


@app.command()
def restore(
    input: Path = INPUT,
    lowpass: str | None = typer.Option(
        None, "--lowpass", help="The input was lowpassed at this cutoff (or auto, or blind)."
    ),
    clip: str | None = typer.Option(None, "--clip", help="The input was clipped at this level (or auto)."),
    gap: list[str] = typer.Option([], "--gap", help="A missing time range, as for 'inpaint' (repeatable)."),
    hiss: str | None = typer.Option(
        None,
        "--hiss",
        help="The input carries hiss: auto (estimated from its quiet moments) or a level (-50).",
    ),
    output: Path | None = OUTPUT,
    checkpoint: str | None = CHECKPOINT,
    quality: str = QUALITY,
    steps: int | None = STEPS,
    draws: int | None = DRAWS,
    mode: str | None = MODE,
    xi: float = XI,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int | None = BATCH,
    overlap: float = OVERLAP,
    force: bool = FORCE,
    quiet: bool = QUIET,
    simulate: bool = SIMULATE,
    plot: Path | None = PLOT,
    format: str | None = FORMAT,
    report: Path | None = REPORT,
) -> None:
    """Several degradations at once (clipped, then lowpassed, with gaps, with hiss); hiss after lowpasses and
    gaps is removed first, then the rest restored from that."""
    from cqtrestore import tasks

    common = _Common(**_common(locals()))
    _run(
        common,
        lambda info, samples: tasks.composite_operator(lowpass, clip, gap, info, samples, _say(common), hiss),
        {"task": "restore", "lowpass": lowpass, "clip": clip, "gap": list(gap), "hiss": hiss},
    )


def _common(values: dict) -> dict:
    """The shared options out of a command's locals()."""
    return {name: values[name] for name in _Common.__dataclass_fields__}


def _say(common: _Common):  # noqa: ANN202
    """A printer for one-line notes (silent with --quiet)."""
    return (lambda message: None) if common.quiet else (lambda message: err.print(message, highlight=False))


def _run(common: _Common, build_operator, task: dict | None = None) -> None:  # noqa: ANN001
    """Validate, build the operator, load the prior, restore with a progress bar, report."""
    import torch

    from cqtrestore import collections, tasks
    from cqtrestore.audio import AudioError
    from cqtrestore.checkpoints import CheckpointError

    torch.set_flush_denormal(True)  # denormal arithmetic at tiny noise levels is several times slower on x86
    if collections.is_collection(common.input):
        return _run_collection(common, build_operator, task or {})
    if common.format is not None or common.report is not None:
        raise fail("--format and --report are for a folder or glob input; for one file, name the -o file")
    say = _say(common)
    try:
        job = tasks.prepare(
            common.input, common.output, common.force, common.simulate, common.plot, build_operator, say
        )
        options = tasks.restore_options(
            job.operator,
            common.mode,
            common.xi,
            common.steps,
            common.seed,
            common.batch_size,
            common.overlap,
            common.device,
            common.quality,
            common.draws,
        )
        restorer = tasks.load_restorer(common.checkpoint, options.device, say)
        report = _with_progress(common.quiet, lambda progress: job.run(restorer, options, progress))
    except (AudioError, CheckpointError, ValueError, OSError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: no output written", code=130) from None
    for line in report:
        say(line)


def _run_collection(common: _Common, build_operator, task: dict) -> None:  # noqa: ANN001
    """A folder or glob: plan, restore each file (sharded under torchrun), summarise; exit 1 if any failed."""
    from rich.markup import escape

    from cqtrestore import collections, tasks
    from cqtrestore.audio import AudioError
    from cqtrestore.checkpoints import CheckpointError
    from cqtrestore.guidance import GuidanceOptions

    if common.simulate or common.plot is not None:
        raise fail("--simulate, --sdr and --plot work on one file, not on a folder or glob")
    try:
        items = collections.plan(common.input, common.output, common.format)
        if common.report is not None and not common.report.resolve().parent.is_dir():
            raise ValueError(f"{common.report}: the report's folder does not exist")
        if common.mode:
            GuidanceOptions(common.mode, common.xi)
        device = tasks.pick_device(common.device)
        ranks = collections.join_ranks()
    except (ValueError, OSError) as error:
        raise fail(str(error)) from None
    say = _say(common) if ranks.rank == 0 else (lambda message: None)
    prefix = f"rank {ranks.rank}: " if ranks.distributed else ""
    files_say = lambda message: _say(common)(prefix + escape(message))  # noqa: E731 (names may hold [ ])
    settings = {**task, **_output_settings(common), "device": device}

    def make_options(operator, item):  # noqa: ANN001, ANN202
        seed = collections.file_seed(common.seed, item.relative)
        return tasks.restore_options(
            operator,
            common.mode,
            common.xi,
            common.steps,
            seed,
            common.batch_size,
            common.overlap,
            device,
            common.quality,
            common.draws,
        )

    try:
        if device == "cuda" and ranks.distributed:
            import torch

            torch.cuda.set_device(ranks.local_rank)
        restorer = tasks.load_restorer(common.checkpoint, device, say)

        prepare_one, restore = collections.item_restorer(restorer, build_operator, make_options)
        summary = collections.restore_collection(
            items, prepare_one, settings, common.force, ranks, files_say, restore
        )
    except (AudioError, CheckpointError, ValueError, OSError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: the file in progress was not written; run again to resume", 130) from None
    finally:
        collections.leave(ranks)
    if summary is None:
        return None
    for line in collections.summary_lines(summary):
        err.print(line, highlight=False, markup=False)
    if common.report is not None:
        collections.write_report(common.report, summary, settings)
    if summary.count("failed"):
        raise typer.Exit(1)
    return None


def _output_settings(common: _Common) -> dict:
    """The shared options that change what is written (a changed one makes earlier outputs stale)."""
    names = ("checkpoint", "quality", "steps", "draws", "mode", "xi", "seed", "batch_size", "overlap")
    return {name: getattr(common, name) for name in names}


def _with_progress(quiet: bool, work):  # noqa: ANN001, ANN202
    """Run ``work(progress)`` under a rich progress bar over windows (none with --quiet)."""
    if quiet:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        "restoring",
        BarColumn(),
        MofNCompleteColumn(),
        "windows",
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("restore", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


# ------------------------------------------------------------------ evaluation


@app.command("eval")
def eval_command(
    clean_dir: Path = typer.Argument(..., help="Folder of clean audio; segments of 2.97 s are cut from it."),
    task: str = typer.Option(..., "--task", help="bwe, declip or inpaint."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Report folder (also the resumable cache)."),
    cutoff: list[float] = typer.Option(
        [1000.0, 3000.0], "--cutoff", help="bwe: lowpass cutoff in Hz (repeat)."
    ),
    sdr: list[float] = typer.Option([1.0, 10.0], "--sdr", help="declip: clipping SDR in dB (repeat)."),
    gap: list[float] = typer.Option([0.1, 0.2, 0.3, 0.5], "--gap", help="inpaint: gap length in s (repeat)."),
    method: list[str] = typer.Option(
        [],
        "--method",
        help="Method to run (repeat; default all): degraded, noise-fill, a-spade, lpc, "
        "cqt-diff-dc, cqt-diff-rg, cqt-diff-dc+rg.",
    ),
    metric: list[str] = typer.Option(
        [],
        "--metric",
        help="Metric to compute (repeat; default lsd, si-sdr, sdr-gain): lsd, si-sdr, sdr-gain, "
        "visqol (ViSQOL MOS-LQO, audio mode), note-f1 (note-onset F1 of Basic Pitch transcriptions, "
        "also inside inpainting gaps); visqol and note-f1 need the 'metrics' extra and are skipped "
        "without it.",
    ),
    segments: int = typer.Option(8, help="How many segments to score per condition."),
    quality: str = QUALITY,
    steps: int | None = STEPS,
    seed: int = typer.Option(0, help="Seed of the segments, gap positions and sampler noise."),
    batch_size: int = typer.Option(4, help="Segments restored together."),
    checkpoint: str | None = typer.Option(None, help="Prior to evaluate (name, path, hf:// or URL)."),
    xi: float = typer.Option(0.35, help="Reconstruction-guidance step xi'."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score CQT-Diff and baselines on clean audio with the paper's protocols (LSD, SI-SDR, ViSQOL, note F1).

    Writes results.md (mean ± 95% CI), results.csv (per item) and bar charts to --out; rerun to resume."""
    import torch
    from rich.markup import escape

    from cqtrestore.evaluate import EvalConfig, metric_problems, run_eval
    from cqtrestore.tasks import pick_device

    torch.set_flush_denormal(True)
    try:
        config = EvalConfig(
            task=task,
            cutoffs=tuple(cutoff),
            sdrs=tuple(sdr),
            gaps=tuple(gap),
            methods=tuple(method),
            segments=segments,
            quality=quality,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            checkpoint=checkpoint,
            xi=xi,
            device=pick_device(device),
            metrics=tuple(metric),
        )
        problems = metric_problems(config.metrics)
        if len(problems) < len(config.metrics):
            for name, reason in problems.items():
                err.print(f"warning: {name} skipped: {escape(reason)}", highlight=False)
        results = _with_progress(quiet, lambda progress: run_eval(config, clean_dir, out, progress))
    except ValueError as error:
        raise fail(escape(str(error))) from None
    except KeyboardInterrupt:
        raise fail(
            "interrupted: scored items are cached; run the same command again to resume", 130
        ) from None
    err.print(f"{results.computed} items scored, {len(results.items) - results.computed} from the cache")
    typer.echo((out / "results.md").read_text())


# ------------------------------------------------------------------ web page


@app.command()
def serve(
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on: loopback unless --allow-remote."
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a non-loopback --host: the page has no login, anyone reaching it can use it.",
    ),
    checkpoint: str | None = CHECKPOINT,
    steps: int | None = typer.Option(
        None,
        "--steps",
        help="Sampler steps of every job, overriding the --quality presets' (the page can set its own).",
    ),
    device: str = DEVICE,
    max_mb: float = typer.Option(200.0, "--max-mb", help="Largest upload accepted, in MB."),
    max_minutes: float = typer.Option(15.0, "--max-minutes", help="Longest upload accepted, in minutes."),
) -> None:
    """A local web page: drop a file, restore it, hear it before and after, download it (web extra)."""
    try:
        from cqtrestore import serve as web
    except ImportError as error:
        from rich.markup import escape

        raise fail(
            escape(f"the web page needs the 'web' extra: pip install 'cqtrestore[web]' ({error})")
        ) from None
    import contextlib

    from rich.markup import escape

    from cqtrestore.checkpoints import CheckpointError

    try:
        web.check_host(host, allow_remote)
        limits = web.Limits(round(max_mb * 1e6), max_minutes * 60)
        settings = web.ServeSettings(checkpoint, steps, device, limits)
        loopback = None if allow_remote else (*web.LOOPBACK_NAMES, host)
        page = web.create_app(settings, loopback, lambda message: err.print(message, highlight=False))
        sock = web.listen(host, port)
    except (CheckpointError, ValueError) as error:
        raise fail(escape(str(error))) from None
    typer.echo(f"cqtrestore page: {web.url_of(sock)}  (Ctrl-C stops it and deletes every upload and result)")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down first, then passes Ctrl-C on
        web.run(page, sock)
    typer.echo("stopped: uploads and results deleted")


# ------------------------------------------------------------------ checkpoints

checkpoints_app = typer.Typer(
    help="List, download and verify the priors cqtrestore knows by name.", no_args_is_help=True
)
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("list")
def checkpoints_list() -> None:
    """List the registered checkpoints (the default is marked)."""
    from cqtrestore.checkpoints import default_checkpoint, list_checkpoints

    default = default_checkpoint()
    for entry in list_checkpoints():
        name = f"{entry.name} (default)" if entry.name == default else entry.name
        typer.echo(f"{name}: preset {entry.preset}, {entry.sample_rate} Hz, {entry.source}")
        typer.echo(f"    {entry.description}; licence: {entry.licence}")


@checkpoints_app.command("download")
def checkpoints_download(
    name: str = typer.Argument(..., help="A registered name, hf://... or https://..."),
) -> None:
    """Fetch a checkpoint into the cache (verified against its sha256 when one is recorded)."""
    from cqtrestore.checkpoints import CheckpointError, resolve

    try:
        path = resolve(name)
    except CheckpointError as error:
        raise fail(str(error)) from None
    typer.echo(str(path))


@checkpoints_app.command("verify")
def checkpoints_verify(name: str = typer.Argument(..., help="A registered name.")) -> None:
    """Check a registered checkpoint's file against the sha256 in checkpoints.toml (exit 1 if it differs)."""
    from cqtrestore.checkpoints import CheckpointError, verify

    try:
        ok, expected, actual = verify(name)
    except CheckpointError as error:
        raise fail(str(error)) from None
    if not expected:
        raise fail(f"{name}: no sha256 on record (file has {actual})", code=1)
    if not ok:
        raise fail(f"{name}: sha256 {actual} does not match {expected}", code=1)
    typer.echo(f"{name}: OK ({actual})")


def main() -> None:
    """Console-script entry point: usage errors, too, are one line and exit 2."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("[bold red]error:[/] interrupted", highlight=False)
        code = 130
    except Exception as error:  # click's usage errors (typer vendors click; match them by their shape)
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        if error.format_message():  # (empty when a bare group printed its help)
            err.print(f"[bold red]error:[/] {error.format_message()} (see --help)", highlight=False)
        code = error.exit_code
    sys.exit(code if isinstance(code, int) else 0)
