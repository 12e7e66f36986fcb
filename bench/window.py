"""Seconds to restore one 2.97-s window on this machine: the piano prior's speed bar.

The bar (piano prior issue): ``piano-small`` restores 2^16 samples (2.97 s at 22.05 kHz) at T = 35 with
data consistency in <= 45 s on a 2-core CPU (target <= 30 s). This times exactly that path,
``Restorer.restore_windows`` on one window of the bundled example lowpassed at 3 kHz (bandwidth
extension, DC), after one untimed warm-up run at T = 2, and counts the network evaluations (2T - 1 for
the Heun sampler). Denormals are flushed as the CLI does.

    python bench/window.py                                   # piano-small, T=35, 3 runs, 2 threads
    python bench/window.py --checkpoint piano-small-deep --repeats 1 --json window.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.diffusion import Denoiser, SamplerOptions
from cqtrestore.guidance import GuidanceOptions
from cqtrestore.operators import LowPass
from cqtrestore.pipeline import WINDOW, Restorer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "piano.flac"


class Counting(torch.nn.Module):
    """A denoiser that counts its calls."""

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser, self.calls = denoiser, 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)


def observation(cutoff: float) -> tuple[torch.Tensor, LowPass]:
    """The first 2^16 samples of the bundled example (22.05 kHz), lowpassed, at the training level."""
    audio, rate = sf.read(EXAMPLE, dtype="float32", frames=WINDOW)
    x = torch.from_numpy(audio)[None] * (0.057 / float(audio.std()))
    lowpass = LowPass(cutoff, rate)
    return lowpass(x), lowpass


def time_window(restorer: Restorer, counting: Counting, steps: int, cutoff: float) -> dict:
    """One restoration at T = ``steps``: wall seconds, network evaluations, seconds per evaluation."""
    y, lowpass = observation(cutoff)
    counting.calls = 0
    began = time.perf_counter()
    out = restorer.restore_windows(y, lowpass, GuidanceOptions("dc"), SamplerOptions(steps=steps), [0])
    seconds = time.perf_counter() - began
    if not torch.isfinite(out).all():
        raise RuntimeError("the restoration is not finite")
    return {"seconds": seconds, "evaluations": counting.calls, "per_evaluation": seconds / counting.calls}


def git_revision() -> str:
    """The checkout's short revision (empty outside git)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cutoff", type=float, default=3000.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    net, info = load_checkpoint(args.checkpoint)
    counting = Counting(info.denoiser(net))
    restorer = Restorer(counting, info.sample_rate)
    time_window(restorer, counting, 2, args.cutoff)  # warm-up: tables, caches, oneDNN kernels
    runs = [time_window(restorer, counting, args.steps, args.cutoff) for _ in range(args.repeats)]
    median = statistics.median(run["seconds"] for run in runs)
    report = {
        "checkpoint": args.checkpoint,
        "steps": args.steps,
        "threads": args.threads,
        "runs": runs,
        "median_seconds": median,
        "bar_45s": median <= 45.0,
        "target_30s": median <= 30.0,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": git_revision(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    for run in runs:
        print(f"{run['seconds']:.1f} s, {run['evaluations']} evaluations, {run['per_evaluation']:.3f} s each")
    print(f"median {median:.1f} s per 2.97-s window (bar 45 s: {'met' if median <= 45 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
