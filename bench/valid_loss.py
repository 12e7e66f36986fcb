"""Validation loss of several checkpoints under one weighting, so priors trained with different data spectra
(and so different per-frequency λ) can be compared on the same crops.

    python bench/valid_loss.py --checkpoints piano-small prior2-dilated prior2-attn \
        --reference prior2-dilated --data data/piano/valid data/piano/heldout --json out.json

Each split gives ``--crops`` fixed crops of ``--segment`` samples (``cqtrestore.data.fixed_crops`` with the
training run's seed, faded over ``--taper`` samples at both ends, as ``cqtrestore train`` makes its
validation crops), noised at each σ with fixed noise. For every checkpoint the denoised estimate D(x, σ) is
scored as  λ_ref(σ, f)·|D − x₀|²(f)  summed over frequency (Parseval), where λ_ref = (σ² + P)/(σ² P) is the
loss weight of the reference checkpoint's data spectrum P: for the reference itself this is its training
loss (paper eq. 6 with per-frequency λ); for the others it is the same yardstick. ``gaussian`` stands for
the reference's stationary Gaussian prior (its network output set to zero), the point training starts
from. Also reported: the denoised estimate's SNR against the clean crop (dB), which needs no weighting,
and its level above 3.5 kHz in the crops' quietest and loudest thirds of frames against the clean one
(a prior that brightens the quiet frames has highs that do not decay with the notes; the loss hides it),
and how much of pure white noise (no music at all) it keeps above 3.5 kHz.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.data import fixed_crops, scan_audio
from cqtrestore.diffusion import Denoiser, ZeroNetwork, rfft_weights
from cqtrestore.metrics import high_band_error_by_loudness
from cqtrestore.train import edge_taper

SAMPLE_RATE = 22050
SIGMAS = (0.01, 0.1, 0.3, 1.0, 3.0)
GAUSSIAN = "gaussian"


def load_denoiser(name: str, reference: Denoiser | None) -> Denoiser:
    """A checkpoint's denoiser, or (``gaussian``) the reference's with F = 0."""
    if name == GAUSSIAN:
        if reference is None or reference.spectrum is None:
            raise SystemExit("valid_loss: 'gaussian' needs a spectral --reference checkpoint")
        return Denoiser(ZeroNetwork(), reference.sigma_data, reference.spectrum)
    net, info = load_checkpoint(name)
    return info.denoiser(net.eval())


def reference_weight(reference: Denoiser, sigma: float, length: int) -> torch.Tensor:
    """λ_ref per rfft bin of ``length`` points: 1 / c_out² of the reference's preconditioning at σ."""
    _, c_out, _ = reference.spectral_scalings(torch.tensor([sigma], dtype=torch.float64), length)
    return c_out.reshape(-1).double().square().reciprocal()


@torch.inference_mode()
def passed_noise_db(
    denoiser: Denoiser, sigma: float, length: int, seed: int, low_hz: float = 3500.0
) -> float:
    """What D(σn, σ) keeps of pure white noise σn above ``low_hz`` (dB; two draws): with no note
    anywhere the posterior mean is near zero, so a piano prior should keep almost nothing. The
    stationary Gaussian keeps its Wiener gain P/(P + σ²)."""
    noise = sigma * torch.randn(2, length, generator=torch.Generator().manual_seed(seed + 77))
    out = denoiser(noise.float(), sigma).double()
    band = torch.fft.rfftfreq(length, 1 / SAMPLE_RATE) >= low_hz
    kept = torch.fft.rfft(out)[:, band].abs().square().sum()
    return float(10 * torch.log10(kept / torch.fft.rfft(noise)[:, band].abs().square().sum()))


@torch.inference_mode()
def scores(
    denoiser: Denoiser, reference: Denoiser, crops: torch.Tensor, sigmas: tuple[float, ...], seed: int
) -> dict[str, dict[str, float]]:
    """Per σ: the λ_ref-weighted loss and the SNR (dB) of D(x, σ), both averaged over crops, and the
    level error above 3.5 kHz in the crops' quietest and loudest thirds of frames (dB)."""
    length = crops.shape[-1]
    result: dict[str, dict[str, float]] = {
        "loss": {},
        "snr_db": {},
        "high_band_quiet_db": {},
        "high_band_loud_db": {},
    }
    for i, sigma in enumerate(sigmas):
        noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(seed * 1000 + i))
        x = (crops + sigma * noise).float()
        denoised = torch.cat([denoiser(x[k : k + 4], sigma) for k in range(0, len(x), 4)]).double()
        error = torch.fft.rfft(denoised - crops).abs().square()
        weight = reference_weight(reference, sigma, length) * rfft_weights(length, error)
        loss = (error * weight).sum(dim=1) / length**2
        snr = 10 * torch.log10(crops.square().sum(1) / (denoised - crops).square().sum(1).clamp_min(1e-30))
        result["loss"][f"{sigma:g}"] = float(loss.mean())
        result["snr_db"][f"{sigma:g}"] = float(snr.mean())
        quiet, loud = high_band_error_by_loudness(crops, denoised, SAMPLE_RATE)
        result["high_band_quiet_db"][f"{sigma:g}"], result["high_band_loud_db"][f"{sigma:g}"] = quiet, loud
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", required=True, help=f"names or files; {GAUSSIAN!r} too")
    parser.add_argument("--reference", required=True, help="the checkpoint whose data spectrum sets λ")
    parser.add_argument("--data", nargs="+", type=Path, default=[Path("data/piano/valid")])
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--segment", type=int, default=32768)
    parser.add_argument("--taper", type=int, default=256)
    parser.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    reference = load_denoiser(args.reference, None)
    if reference.spectrum is None:
        raise SystemExit(f"valid_loss: the reference {args.reference} has no data spectrum (scalar)")
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "reference": args.reference,
        "splits": {},
    }
    sigmas = tuple(args.sigmas)
    columns = " | ".join(f"σ={s:g}" for s in sigmas)
    print(f"| split | checkpoint | {columns} | SNR at σ={sigmas[-1]:g} |")
    print("|---|---|" + "---:|" * (len(sigmas) + 1))
    denoisers = {
        name: reference if name == args.reference else load_denoiser(name, reference)
        for name in args.checkpoints
    }
    for folder in args.data:
        files = scan_audio(folder)[0]
        crops = fixed_crops(files, args.segment, SAMPLE_RATE, args.crops, args.seed).double()
        crops = crops * edge_taper(args.segment, args.taper).double()
        split = report["splits"].setdefault(folder.name, {})
        for name, denoiser in denoisers.items():
            split[name] = scores(denoiser, reference, crops, sigmas, args.seed)
            cells = " | ".join(f"{split[name]['loss'][f'{s:g}']:.3f}" for s in sigmas)
            snr = split[name]["snr_db"][f"{sigmas[-1]:g}"]
            print(f"| {folder.name} | {name} | {cells} | {snr:.1f} dB |", flush=True)
        for name in args.checkpoints:  # the highs in quiet frames: a prior should not brighten them
            quiet, loud = split[name]["high_band_quiet_db"], split[name]["high_band_loud_db"]
            cells = " | ".join(f"{quiet[f'{s:g}']:+.1f} / {loud[f'{s:g}']:+.1f}" for s in sigmas)
            label = f"{name}: level > 3.5 kHz, quiet / loud frames (dB)"
            print(f"| {folder.name} | {label} | {cells} | |", flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    report["passed_noise_db"] = {}  # no data involved: once per checkpoint
    for name, denoiser in denoisers.items():
        passed = {f"{s:g}": passed_noise_db(denoiser, s, args.segment, args.seed) for s in sigmas}
        report["passed_noise_db"][name] = passed
        cells = " | ".join(f"{value:+.1f}" for value in passed.values())
        print(f"| (none) | {name}: white noise kept > 3.5 kHz (dB) | {cells} | |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
