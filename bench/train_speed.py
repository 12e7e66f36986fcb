"""Training speed: seconds per optimiser step (forward, backward, clip, Adam, EMA) per preset.

Times the step of ``cqtrestore.train`` on random audio (no disk reads) at batch 4 of 2**16 samples, for
``paper``, ``small`` and ``small-shallow``: on the CPU in fp32, and on CUDA when present in fp32, bf16
autocast, and bf16 + ``torch.compile`` (channels-last, as ``cqtrestore train`` does). Warm-up steps
(and compilation) are excluded; the median step is reported.

    python bench/train_speed.py --presets small --steps 2              # a quick CPU check
    python bench/train_speed.py --json train_speed.json      # all presets (paper: minutes per step on CPU)

Never bf16 on CPU: on AVX2 machines without native bf16 it is 30-80x slower than fp32.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from cqtrestore.diffusion import Denoiser
from cqtrestore.train import TrainConfig, ema_decay, initialise, step_noise, update_ema, weighted_loss
from cqtrestore.unet import build_unet

PRESETS = ("paper", "small", "small-shallow")


@dataclass(frozen=True)
class Timing:
    preset: str
    device: str
    variant: str
    batch: int
    segment: int
    seconds_per_step: float
    steps: int


def variants(device: str) -> list[tuple[str, bool, bool]]:
    """(name, bf16, compile) combinations worth timing on ``device``."""
    if device == "cpu":
        return [("fp32", False, False)]
    return [("fp32", False, False), ("bf16", True, False), ("bf16+compile", True, True)]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(config: TrainConfig, device: torch.device, steps: int, warmup: int) -> list[float]:
    """Wall seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    net = initialise(build_unet(config.preset)).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    model = net.to(memory_format=torch.channels_last) if device.type == "cuda" else net
    model = torch.compile(model) if config.compile else model
    denoiser = Denoiser(model, config.sigma_data)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    x = 0.057 * torch.randn(config.batch_size, config.segment, device=device)
    times = []
    for step in range(warmup + steps):
        synchronise(device)
        tic = time.perf_counter()
        sigma, noise = step_noise(config, step)
        with torch.autocast(device.type, torch.bfloat16, enabled=config.bf16):
            per_item = weighted_loss(denoiser, x, sigma.to(device), noise.to(device))
        optimizer.zero_grad(set_to_none=True)
        per_item.mean().backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        update_ema(ema, net, ema_decay(config, step))
        synchronise(device)
        times.append(time.perf_counter() - tic)
    return times[warmup:]


def run(args: argparse.Namespace) -> list[Timing]:
    devices = ["cpu"] if args.device == "cpu" or not torch.cuda.is_available() else ["cuda"]
    devices = ["cpu", "cuda"] if args.device == "both" and torch.cuda.is_available() else devices
    results = []
    for device in devices:
        for preset in args.presets:
            for name, bf16, compile_net in variants(device):
                config = TrainConfig(
                    preset=preset,
                    batch_size=args.batch_size,
                    segment=args.segment,
                    bf16=bf16,
                    compile=compile_net,
                )
                times = time_steps(config, torch.device(device), args.steps, args.warmup)
                timing = Timing(
                    preset, device, name, args.batch_size, args.segment, statistics.median(times), len(times)
                )
                print(
                    f"{preset:14s} {device:4s} {name:13s} {timing.seconds_per_step:8.3f} s/step", flush=True
                )
                results.append(timing)
    return results


def markdown(results: list[Timing]) -> str:
    rows = ["| preset | device | variant | batch × samples | s / step |", "|---|---|---|---|---:|"]
    rows += [
        f"| {r.preset} | {r.device} | {r.variant} | {r.batch} × {r.segment} | {r.seconds_per_step:.3f} |"
        for r in results
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="network presets to time")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation included)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segment", type=int, default=2**16, help="crop length in samples")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "both"),
        default="auto",
        help="auto: CUDA when present, else CPU; both: CPU and CUDA",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    results = run(args)
    print()
    print(markdown(results))
    if args.json:
        machine = {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        }
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "results": [asdict(r) for r in results]}, handle, indent=2)


if __name__ == "__main__":
    main()
