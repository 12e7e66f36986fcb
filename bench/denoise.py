"""Hiss removal: the prior against a short-time Wiener filter with the same noise estimate, per SNR.

    python bench/denoise.py --data data/piano/valid --segments 8 --json docs/bench-denoise.json

Each valid segment (2^16 samples at 22.05 kHz, at the training level) gets white or pink (1/f power)
noise at 10, 20 and 30 dB SNR. The noise spectrum is estimated from the noisy segment itself
(``estimate_noise``, as ``cqtrestore denoise`` does) and given to both methods: the Wiener baseline
(``wiener_denoise``) and the prior through the CLI's path (``Restorer.restore`` with ``Hiss``) for each
``--setting`` ``SOLVER:STEPS`` (the sampler from the noisy input at the noise's level; ``balanced`` is
the preset; ``:xK`` after either averages K posterior draws; ``:raw`` last leaves out the second stage,
the prior-guided Wiener filter below 2 kHz, ``Hiss.refine``). Where the ``noisereduce`` package is
installed (the ``[bench]`` extra), the spectral gating a user would reach for runs beside them as
they would call it, with its own noise estimate: ``reduce_noise(y, sr)`` (non-stationary, the default)
and ``reduce_noise(y, sr, stationary=True)``.
Reported: SI-SDR improvement over the noisy input and LSD, mean ± 95 % CI over segments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cqtrestore.baselines import wiener_denoise
from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.evaluate import load_segments, mean_ci
from cqtrestore.metrics import lsd, si_sdr
from cqtrestore.noise import Hiss, NoiseEstimate, estimate_noise
from cqtrestore.pipeline import RestoreOptions, Restorer
from cqtrestore.tasks import restore_options

SR = 22050


def noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white or pink (power ∝ 1/f above 20 Hz) noise."""
    white = rng.standard_normal(length)
    if kind == "white":
        return white
    freqs = np.fft.rfftfreq(length, 1 / SR)
    shaped = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(freqs, 20.0)), length)
    return shaped / shaped.std()


def scores(clean: np.ndarray, noisy: np.ndarray, out: np.ndarray) -> dict[str, float]:
    x, y, z = (torch.from_numpy(np.asarray(a, dtype=np.float64))[None] for a in (clean, noisy, out))
    return {"si_sdr_gain": float(si_sdr(x, z) - si_sdr(x, y)), "lsd": float(lsd(x, z))}


def spectral_gating() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """noisereduce's two modes as a user calls them (empty where the package is missing)."""
    try:
        import noisereduce
    except ImportError:
        return {}
    return {
        "noisereduce": lambda y: noisereduce.reduce_noise(y=y, sr=SR).astype(np.float32),
        "noisereduce-stationary": lambda y: noisereduce.reduce_noise(y=y, sr=SR, stationary=True).astype(
            np.float32
        ),
    }


def setting_options(setting: str, estimate: NoiseEstimate, seed: int) -> tuple[Hiss, RestoreOptions]:
    """The operator and options of a setting: ``balanced`` (the preset), ``SOLVER:STEPS`` (the preset's
    start with another sampler), either with ``xK`` after a colon: the mean of K posterior draws
    (``balanced:x2``, ``dpmpp2m:6:x4``), and ``raw`` last: without the second stage (``balanced:raw``)."""
    parts = setting.split(":")
    refines = parts[-1] != "raw"
    if not refines:
        parts.pop()
    hiss = Hiss(estimate, SR, refines=refines)
    options = restore_options(hiss, seed=seed, device="cpu", quality="balanced")
    if parts[-1].startswith("x"):
        options = replace(options, draws=int(parts.pop()[1:]))
    if parts != ["balanced"]:
        solver, steps = parts
        options = replace(options, sampler=replace(options.sampler, solver=solver, steps=int(steps)))
    return hiss, options


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--data", type=Path, default=Path("data/piano/valid"))
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--snrs", type=float, nargs="+", default=[10.0, 20.0, 30.0])
    parser.add_argument("--noises", nargs="+", default=["white", "pink"], choices=["white", "pink"])
    parser.add_argument("--settings", nargs="+", default=["balanced", "ancestral:8", "dpmpp2m:2"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    net, info = load_checkpoint(args.checkpoint)
    restorer = Restorer(info.denoiser(net), info.sample_rate)
    clean = load_segments(args.data, args.segments, args.seed).numpy()
    rng = np.random.default_rng(args.seed)
    report = {
        "checkpoint": args.checkpoint,
        "segments": args.segments,
        "data": str(args.data),
        "conditions": {},
    }
    report["date_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    gating = spectral_gating()
    if not gating:
        print("noisereduce is not installed (pip install -e '.[bench]'): spectral gating left out")
    methods = ["noisy", "wiener", *gating, *args.settings]
    print("| noise | SNR (dB) | " + " | ".join(f"{m}: ΔSI-SDR, LSD, s" for m in methods) + " |")
    print("|---|---:|" + "---|" * len(methods))
    for kind in args.noises:
        for snr in args.snrs:
            rows = {method: [] for method in methods}
            for x in clean:
                n = noise(kind, len(x), rng) * np.sqrt(np.mean(x**2) / 10 ** (snr / 10))
                y = (x + n).astype(np.float32)
                estimate = estimate_noise(y, SR)
                rows["noisy"].append(dict(scores(x, y, y), seconds=0.0))
                began = time.perf_counter()
                out = wiener_denoise(y, estimate.density, SR)
                rows["wiener"].append(dict(scores(x, y, out), seconds=time.perf_counter() - began))
                for name, gate in gating.items():
                    began = time.perf_counter()
                    out = gate(y)
                    rows[name].append(dict(scores(x, y, out), seconds=time.perf_counter() - began))
                for setting in args.settings:
                    hiss, options = setting_options(setting, estimate, args.seed)
                    began = time.perf_counter()
                    out = restorer.restore(y, SR, hiss, options)
                    rows[setting].append(dict(scores(x, y, out), seconds=time.perf_counter() - began))
            summary = {m: {k: mean_ci([r[k] for r in rs]) for k in rs[0]} for m, rs in rows.items()}
            report["conditions"][f"{kind}:{snr:g}"] = {"summary": summary, "estimate_white": estimate.white}
            cells = [
                f"{s['si_sdr_gain'][0]:+.2f} ± {s['si_sdr_gain'][1]:.2f}, {s['lsd'][0]:.3f}, "
                f"{s['seconds'][0]:.1f}"
                for s in summary.values()
            ]
            print(f"| {kind} | {snr:g} | " + " | ".join(cells) + " |", flush=True)
            if args.json:
                args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
