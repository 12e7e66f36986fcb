"""Blind bandwidth extension against the known filter: estimated cutoff and slope, and LSD, per filter.

    python bench/blind.py --data data/piano/valid --segments 8 --json docs/bench-blind.json

Each valid segment (2^16 samples at 22.05 kHz) is lowpassed by filters the method is not told — the
evaluation's Kaiser FIR (501 taps) and zero-phase Butterworth magnitudes of order 2-8 — and restored
twice through the CLI's path (``Restorer.restore``, the default ``balanced`` preset): with
``BlindLowPass`` (cutoff and slope estimated while sampling on the segment, starting from the cutoff
detector's estimate, as ``--cutoff blind`` does) and with the true filter given. Reported: the cutoff
error (Hz, against the true filter's −3 dB point), the estimated slope (its error for the Butterworths),
and the LSD and SI-SDR of both restorations, mean ± 95 % CI over segments.

``--snr DB`` adds white hiss at that SNR (against the lowpassed segment) after the filter, as an old
recording carries it; both restorations are then the chain of ``restore --lowpass … --hiss auto`` (the
lowpass, then hiss estimated from the noisy segment: the hiss removed first, then the lowpass).
``--at-once`` samples that chain in one run instead, as cqtrestore did before 2026-12-07 (the
comparison in docs/benchmarks.md). The JSON also holds the scores of the input itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cqtrestore.blind import DB_PER_ORDER, BlindLowPass
from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.evaluate import load_segments, mean_ci
from cqtrestore.metrics import lsd, si_sdr
from cqtrestore.noise import Hiss, estimate_noise
from cqtrestore.operators import Compose, LowPass
from cqtrestore.pipeline import Restorer
from cqtrestore.quality import resolve
from cqtrestore.tasks import blind_lowpass, restore_options

SR = 22050
FILTERS = ["kaiser:1000", "kaiser:3000", "butter2:2000", "butter4:3000", "butter6:4000", "butter8:1000"]


def true_filter(name: str) -> tuple[object, float, float | None]:
    """(operator, −3 dB cutoff in Hz, slope in dB/octave or None) for ``kaiser:HZ`` or ``butterN:HZ``."""
    kind, hz = name.split(":")
    if kind == "kaiser":
        op = LowPass(float(hz), SR)
        freqs = np.linspace(0, SR / 2, 1 << 16)
        response = np.abs(np.polynomial.polynomial.polyval(np.exp(-2j * np.pi * freqs / SR), op._design()))
        return op, float(freqs[np.argmax(response < 2**-0.5)]), None
    order = int(kind.removeprefix("butter"))
    slope = order * DB_PER_ORDER
    return BlindLowPass(float(hz), SR, slope_db=slope, estimate=False), float(hz), slope


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--data", type=Path, default=Path("data/piano/valid"))
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--filters", nargs="+", default=FILTERS)
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snr", type=float, help="white hiss at this SNR (dB) after the lowpass")
    parser.add_argument("--at-once", action="store_true", help="with --snr: the chain in one sampler run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    net, info = load_checkpoint(args.checkpoint)
    restorer = Restorer(info.denoiser(net), info.sample_rate)
    clean = load_segments(args.data, args.segments, args.seed)
    report = {
        "checkpoint": args.checkpoint,
        "segments": args.segments,
        "data": str(args.data),
        "quality": args.quality,
        "snr_db": args.snr,
        "at_once": args.at_once,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "filters": {},
    }
    header = ["filter", "cutoff error (Hz)", "estimated slope (dB/oct)", "LSD blind", "LSD known"]
    print("| " + " | ".join([*header, "SI-SDR blind", "SI-SDR known"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.filters:
        known, cutoff, slope = true_filter(name)
        rows = []
        generator = torch.Generator().manual_seed(args.seed)
        for x in clean:
            y = known(x[None]).float()
            if args.snr is not None:
                noise = torch.randn(y.shape, generator=generator)
                y = y + noise * float(y.square().mean().sqrt()) * 10 ** (-args.snr / 20)
            blind, _ = blind_lowpass(y[0].numpy(), SR)
            row = {"start_hz": blind.cutoff_hz, "stopband_hz": blind.stopband_hz or math.nan}
            row["lsd_input"], row["si_sdr_input"] = (
                float(lsd(x[None], y.double())),
                float(si_sdr(x[None], y.double())),
            )
            operators = {"blind": blind, "known": known}
            if args.snr is not None:
                hiss = Hiss(estimate_noise(y[0].numpy(), SR), SR)
                operators = {label: Compose(op, hiss) for label, op in operators.items()}
            for label, op in operators.items():
                options = restore_options(op, seed=args.seed, device="cpu", quality=args.quality)
                if args.at_once:
                    plan = resolve(args.quality, op)
                    options = replace(
                        options,
                        denoise_first=None,
                        guidance=plan.guidance,
                        sampler=plan.sampler,
                        warm_start=plan.warm_start,
                        draws=plan.draws,
                    )
                began = time.perf_counter()
                out = torch.from_numpy(restorer.restore(y[0].numpy(), SR, op, options)).double()[None]
                row[f"seconds_{label}"] = time.perf_counter() - began
                row[f"lsd_{label}"] = float(lsd(x[None], out))
                row[f"si_sdr_{label}"] = float(si_sdr(x[None], out))
            estimated_cutoff, estimated_slope = blind.estimated_response()
            row["cutoff_error_hz"] = estimated_cutoff - cutoff
            row["slope_db"] = estimated_slope
            row["slope_error_db"] = estimated_slope - slope if slope is not None else math.nan
            rows.append(row)
        summary = {key: mean_ci([row[key] for row in rows]) for key in rows[0]}
        report["filters"][name] = {
            "true_cutoff_hz": cutoff,
            "true_slope_db": slope,
            "rows": rows,
            "summary": summary,
        }

        def cell(key: str, summary: dict = summary) -> str:
            return f"{summary[key][0]:.2f} ± {summary[key][1]:.2f}"

        slope_text = cell("slope_db") + (f" (true {slope:.0f})" if slope else " (FIR)")
        print(
            f"| {name} (−3 dB at {cutoff:.0f} Hz) | {cell('cutoff_error_hz')} | {slope_text} | "
            f"{cell('lsd_blind')} | {cell('lsd_known')} | {cell('si_sdr_blind')} | {cell('si_sdr_known')} |",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
