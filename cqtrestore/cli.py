"""Command-line interface: parses, validates and calls the library; holds no algorithm."""

from __future__ import annotations

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
    preset: str = typer.Option("small", help="Network preset: paper, small, small-wide, debug."),
    steps: int = typer.Option(100_000, help="Total optimiser steps (a resumed run continues to this)."),
    batch_size: int = typer.Option(4, help="Crops per step."),
    segment: int = typer.Option(65536, help="Crop length in samples at the model rate."),
    lr: float = typer.Option(2e-4, help="Adam learning rate after warm-up."),
    warmup: int = typer.Option(1000, help="Learning-rate warm-up steps."),
    ema: float = typer.Option(0.9999, help="EMA decay of the exported weights."),
    valid_dir: Path | None = typer.Option(
        None, help="Separate validation folder (else a held-out fraction)."
    ),
    valid_fraction: float = typer.Option(0.05, help="Fraction of the audio held out for validation."),
    valid_crops: int = typer.Option(16, help="Fixed validation crops (loss at 8 noise levels each save)."),
    seed: int = typer.Option(0, help="Seed of crops, noise levels and initial weights."),
    log_every: int = typer.Option(50, help="Steps between log lines."),
    save_every: int = typer.Option(500, help="Steps between validation and checkpoints."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: its default)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
) -> None:
    """Train a diffusion prior on a folder of audio (EDM loss, Adam, EMA; resumable)."""
    from cqtrestore.data import DataError
    from cqtrestore.train import TrainConfig
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
        )
    except ValueError as error:
        raise fail(str(error)) from None

    def show(record: dict) -> None:
        if "loss" in record:
            err.print(f"step {record['step']:>7}  loss {record['loss']:.4f}  {record['it_per_s']:.2f} it/s")
        elif "valid" in record:
            err.print(
                f"step {record['step']:>7}  valid "
                + "  ".join(f"{k}:{v:.3f}" for k, v in record["valid"].items())
            )

    try:
        path = run_training(config, data_dir, out, resume=resume, on_log=show, valid_dir=valid_dir)
    except (DataError, FileExistsError) as error:
        raise fail(str(error)) from None
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


def main() -> None:
    """Console-script entry point."""
    app()
