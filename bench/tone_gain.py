"""Does the denoiser amplify a quiet tone under noise? A minute's check before a checkpoint is promoted.

    python bench/tone_gain.py --checkpoints prior2-context prior2-context-train --json tone-gain.json

For sines every quarter octave from 110 Hz up to 9.5 kHz (each moved to the nearest frequency that is
periodic in the window, so there are no edges), at ``--levels`` dB RMS, under white noise of level σ
(``--sigmas``), the tone gain g = ⟨D(s + σn; σ), s⟩ / ⟨s, s⟩ of each checkpoint's denoiser. A posterior
mean shrinks what the noise hides (on a stationary Gaussian prior g = P(f)/(P(f) + σ²) ≤ 1); a gain
above 1 is amplification, which the probability-flow ODE repeats at every step. The step-3,800
fine-tune of `prior2-context` has 1.46 at 3.5 kHz (σ 0.05, −25 dB) and one of its 8 unconditional draws
turned into a full-scale whistle there; the default has 1.15 (docs/bench-tone-gain.json,
docs/model-card.md). Reported per checkpoint, level and σ: the largest gain and its frequency (one
noise draw per tone, seeded).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.diffusion import DenoiserFn

LENGTH = 65536
LOWEST_HZ, HIGHEST_HZ = 110.0, 9500.0


def tone_frequencies(sample_rate: int, length: int) -> torch.Tensor:
    """Quarter octaves from LOWEST_HZ to HIGHEST_HZ, each rounded to a bin centre of ``length`` samples."""
    count = int(math.log2(HIGHEST_HZ / LOWEST_HZ) * 4) + 1
    nominal = LOWEST_HZ * 2.0 ** (torch.arange(count, dtype=torch.float64) / 4)
    return torch.round(nominal * length / sample_rate) * sample_rate / length


@torch.inference_mode()
def tone_gains(
    denoiser: DenoiserFn,
    freqs: torch.Tensor,
    level_db: float,
    sigma: float,
    sample_rate: int,
    length: int = LENGTH,
    generator: torch.Generator | None = None,
    batch: int = 8,
) -> torch.Tensor:
    """g = ⟨D(s + σn; σ), s⟩ / ⟨s, s⟩ for a sine s of RMS ``level_db`` at each of ``freqs``, (len(freqs),)."""
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    amplitude = math.sqrt(2) * 10 ** (level_db / 20)
    tones = (amplitude * torch.sin(2 * math.pi * freqs[:, None] * t[None])).float()
    gains = []
    for first in range(0, len(tones), batch):
        s = tones[first : first + batch]
        noisy = s + sigma * torch.randn(s.shape, generator=generator)
        denoised = denoiser(noisy, torch.tensor(sigma)).to(s.dtype)
        gains.append((denoised * s).double().sum(-1) / s.double().square().sum(-1))
    return torch.cat(gains)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoints", nargs="+", default=["prior2-context"], help="registry names or paths"
    )
    parser.add_argument("--levels", type=float, nargs="+", default=[-25.0], help="tone RMS, dB")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05, 0.02])
    parser.add_argument("--length", type=int, default=LENGTH, help="samples per window")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    report = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "length": args.length,
        "seed": args.seed,
        "results": [],
    }
    print("| checkpoint | level dB | " + " | ".join(f"σ {s:g}" for s in args.sigmas) + " |")
    print("|---|---:|" + "---:|" * len(args.sigmas))
    for name in args.checkpoints:
        net, info = load_checkpoint(name)
        denoiser = info.denoiser(net)
        freqs = tone_frequencies(info.sample_rate, args.length)
        generator = torch.Generator().manual_seed(args.seed)
        for level in args.levels:
            cells = []
            for sigma in args.sigmas:
                gains = tone_gains(denoiser, freqs, level, sigma, info.sample_rate, args.length, generator)
                top = int(gains.argmax())
                report["results"].append(
                    {
                        "checkpoint": name,
                        "level_db": level,
                        "sigma": sigma,
                        "freqs_hz": freqs.tolist(),
                        "gains": gains.tolist(),
                        "max_gain": float(gains[top]),
                        "max_at_hz": float(freqs[top]),
                    }
                )
                cells.append(f"{float(gains[top]):.2f} ({float(freqs[top]):.0f} Hz)")
            print(f"| {name} | {level:g} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
