"""Quick quality check of a prior on held-out 2^16-sample segments: BWE LSD against the noise-fill baseline.

    python bench/quality.py --checkpoint checkpoints/piano-small.safetensors --data data/piano/valid \
        --segments 4 --cutoffs 3000 1000 --steps 35 --json quality.json

For each cutoff the segments are lowpassed (the paper's Kaiser FIR), restored with data consistency (the
paper's BWE setting) and scored with ``cqtrestore.metrics.lsd`` (STFT 2048/512 Hann, log10 power, floor
1e-10); the spectral-envelope noise fill (``cqtrestore.baselines.noise_fill_bwe``) and the lowpassed input are
scored beside it. Also reports CPU seconds per segment. Used to pick the compact preset (model card).

``--bands 0 1000 3000 5000 7000 9000 11025`` also says where each LSD comes from: per band, the mean
squared log10 difference inside LSD's square root and the mean log10 power of clean, restored and
noise-filled audio (``cqtrestore.metrics.lsd_by_band``). ``--scale-rms`` scales each segment to the
training RMS first, as ``cqtrestore.evaluate`` (and so ``scripts/results.py``) does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cqtrestore.baselines import noise_fill_bwe
from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.data import fixed_crops, scan_audio
from cqtrestore.diffusion import Denoiser, SamplerOptions, ZeroNetwork, sample_heun
from cqtrestore.evaluate import to_training_rms
from cqtrestore.guidance import GuidanceOptions, guided_denoiser
from cqtrestore.metrics import lsd, lsd_by_band
from cqtrestore.operators import LowPass

SEGMENT = 65536


@torch.inference_mode()
def bwe(
    denoiser: Denoiser, lowpass: LowPass, y: torch.Tensor, sampler: SamplerOptions, seed: int
) -> torch.Tensor:
    """The paper's BWE: data consistency at every step of the Heun sampler."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(y.shape, generator=generator) * sampler.sigma_max
    conditioned = guided_denoiser(denoiser, lowpass, y, GuidanceOptions("dc"))
    return sample_heun(conditioned, noise, sampler.sigmas(), generator=generator, **sampler.churn())


def evaluate(
    checkpoint: str,
    data: Path,
    segments: int,
    cutoffs: list[float],
    steps: int,
    seed: int,
    zero: bool = False,
    bands: list[float] | None = None,
    scale_rms: bool = False,
) -> dict:
    """LSD of the restored, noise-filled and lowpassed segments per cutoff (means over segments)."""
    net, info = load_checkpoint(checkpoint)
    denoiser = info.denoiser(ZeroNetwork() if zero else net)
    files, _ = scan_audio(data)
    clean = fixed_crops(files, SEGMENT, info.sample_rate, segments, seed=seed)
    if scale_rms:
        clean = to_training_rms(clean)
    results = {
        "checkpoint": str(checkpoint),
        "zero_network": zero,
        "segments": segments,
        "steps": steps,
        "cutoffs": {},
    }
    for cutoff in cutoffs:
        lowpass = LowPass(cutoff, info.sample_rate)
        y = lowpass(clean)
        began = time.process_time()
        restored = bwe(denoiser, lowpass, y, SamplerOptions(steps=steps), seed)
        cpu_s = (time.process_time() - began) / segments
        filled = noise_fill_bwe(y, lowpass, torch.Generator().manual_seed(seed))
        row = {
            "restored": float(lsd(clean, restored).mean()),
            "noise_fill": float(lsd(clean, filled).mean()),
            "lowpassed": float(lsd(clean, y).mean()),
            "cpu_s_per_segment": cpu_s,
        }
        row["ratio_to_noise_fill"] = row["restored"] / row["noise_fill"]
        if bands:
            row["bands"] = band_table(clean, restored, filled, bands, info.sample_rate)
        results["cutoffs"][str(int(cutoff))] = row
        print(
            f"{checkpoint} cutoff {cutoff:g}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "bands"),
            flush=True,
        )
        for band in row.get("bands", []):
            print(
                "  "
                + ", ".join(f"{k} {v:g}" if k.endswith("hz") else f"{k} {v:.2f}" for k, v in band.items())
            )
    return results


def band_table(
    clean: torch.Tensor, restored: torch.Tensor, filled: torch.Tensor, edges: list[float], sample_rate: int
) -> list[dict]:
    """Per band: squared log10 differences of restored and noise fill, and the three mean log10 powers."""
    ours, clean_level, restored_level = lsd_by_band(clean, restored, edges, sample_rate)
    theirs, _, filled_level = lsd_by_band(clean, filled, edges, sample_rate)
    return [
        {
            "low_hz": lo,
            "high_hz": hi,
            "restored_sq": float(a),
            "noise_fill_sq": float(b),
            "clean_log10": float(c),
            "restored_log10": float(d),
            "noise_fill_log10": float(e),
        }
        for lo, hi, a, b, c, d, e in zip(
            edges, edges[1:], ours, theirs, clean_level, restored_level, filled_level, strict=False
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", nargs="+", required=True, help="registry names or paths")
    parser.add_argument("--data", type=Path, default=Path("data/piano/valid"))
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[3000.0, 1000.0])
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--zero-network", action="store_true", help="F = 0: a spectral checkpoint's Gaussian prior"
    )
    parser.add_argument("--bands", type=float, nargs="+", help="band edges in Hz: where each LSD comes from")
    parser.add_argument("--scale-rms", action="store_true", help="scale segments to the training RMS")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    report = [
        evaluate(
            c,
            args.data,
            args.segments,
            args.cutoffs,
            args.steps,
            args.seed,
            args.zero_network,
            args.bands,
            args.scale_rms,
        )
        for c in args.checkpoint
    ]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
