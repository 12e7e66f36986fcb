"""The training loop: EDM loss on random crops, Adam, EMA, resumable checkpoints, JSONL logs.

Read it top to bottom in ``train``. Everything random in a step (crops, σ, noise) is a function of
(seed, step), so ``--resume`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from cqtrestore.checkpoints import atomic_write, save_weights
from cqtrestore.data import RandomCrops, fixed_crops, scan_audio, split_files
from cqtrestore.diffusion import SIGMA_DATA, Denoiser, EDMLoss, training_sigmas
from cqtrestore.unet import build_unet, min_length, resolve_config

VALID_SIGMAS = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0)
LOSS_BINS = 8  # log-spaced σ bins of the training-loss log


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (stored in its checkpoints)."""

    preset: str = "small"
    steps: int = 100_000
    batch_size: int = 4
    segment: int = 65536
    lr: float = 2e-4
    warmup_steps: int = 1000
    ema: float = 0.9999
    grad_clip: float = 1.0
    sigma_distribution: str = "rho"
    sigma_min: float = 1e-6
    sigma_max: float = 10.0
    rho: float = 10.0
    sigma_data: float = SIGMA_DATA
    gain_db: float = 3.0
    seed: int = 0
    valid_fraction: float = 0.05
    valid_crops: int = 16
    log_every: int = 50
    save_every: int = 500
    threads: int = 0  # 0: torch's default

    def __post_init__(self) -> None:
        resolve_config(self.preset)
        positive = ("steps", "batch_size", "segment", "log_every", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and 0 <= self.ema < 1 and self.grad_clip > 0 and self.warmup_steps >= 0):
            raise ValueError("need lr > 0, 0 <= ema < 1, grad_clip > 0 and warmup_steps >= 0")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@torch.no_grad()
def initialise(net: torch.nn.Module) -> torch.nn.Module:
    """Start every FiLM scale near 1 (the reference's default init gives ≈0.1 per block, so the signal
    fades by orders of magnitude through the blocks and training stalls)."""
    for name, module in net.named_modules():
        if name.endswith("film.output_layer"):
            module.bias.fill_(1.0)
            module.weight.mul_(0.1)
    return net


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A torch generator for one (seed, step, stream): reproducible regardless of resumption."""
    state = np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
    return config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·net, over parameters (buffers copied)."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def ema_decay(config: TrainConfig, step: int) -> float:
    """EMA decay with warm-up: min(ema, (1 + step) / (10 + step))."""
    return min(config.ema, (1 + step) / (10 + step))


@torch.no_grad()
def validation_loss(
    denoiser: Denoiser, crops: torch.Tensor, config: TrainConfig, batch: int = 8
) -> dict[str, float]:
    """λ-weighted loss of ``denoiser`` on fixed crops at each σ of ``VALID_SIGMAS`` (fixed noise)."""
    loss, result = EDMLoss(config.sigma_data), {}
    for i, sigma in enumerate(VALID_SIGMAS):
        values = []
        for start in range(0, len(crops), batch):
            x = crops[start : start + batch]
            g = step_generator(config.seed, 2**40 + start, i)
            values.append(loss(denoiser, x, torch.full((len(x),), sigma), generator=g))
        result[f"{sigma:g}"] = torch.cat(values).mean().item()
    return result


def loss_bins(config: TrainConfig) -> np.ndarray:
    """Edges of the log-spaced σ bins used to report training loss by noise level."""
    return np.geomspace(config.sigma_min, config.sigma_max, LOSS_BINS + 1)


def save_checkpoint(path: Path, step: int, config: TrainConfig, net, ema, optimizer) -> None:
    """Model, EMA, optimizer, step and config in one file, written atomically."""
    state = {
        "step": step,
        "config": json.dumps(asdict(config)),
        "model": net.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by ``save_checkpoint`` (tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


LogFn = Callable[[dict], None]


def train(
    config: TrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    on_log: LogFn | None = None,
    valid_dir: str | Path | None = None,
) -> Path:
    """Train a network on the audio under ``data_dir``; returns the checkpoint path in ``out_dir``."""
    out_dir = Path(out_dir)
    checkpoint_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)  # tiny-σ gradients are denormal: 5x slower on x86 without this
    net_config = resolve_config(config.preset)
    segment_seconds = max(config.segment, min_length(net_config)) / net_config.sample_rate

    # Data: train files, and validation files (a held-out fraction or a separate folder).
    files, skipped = scan_audio(data_dir, min_seconds=segment_seconds / 4)
    if valid_dir is not None:
        train_files, valid_files = files, scan_audio(valid_dir)[0]
    else:
        train_files, valid_files = split_files(files, config.valid_fraction, config.seed)
    crops = RandomCrops(train_files, config.segment, net_config.sample_rate, config.seed, config.gain_db)
    valid = fixed_crops(
        valid_files or train_files, config.segment, net_config.sample_rate, config.valid_crops, config.seed
    )

    # Model, EMA copy, optimizer; continue from the checkpoint when resuming.
    torch.manual_seed(config.seed)
    net = initialise(build_unet(net_config))
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    start = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    elif not resume and checkpoint_path.exists():
        raise FileExistsError(f"{checkpoint_path} exists: resume it or choose another output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    denoiser, ema_denoiser = Denoiser(net, config.sigma_data), Denoiser(ema, config.sigma_data)
    loss_fn, edges = EDMLoss(config.sigma_data), loss_bins(config)

    def log(record: dict) -> None:
        with log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if on_log is not None:
            on_log(record)

    if start == 0:
        log(
            {
                "event": "start",
                "train_files": len(train_files),
                "valid_files": len(valid_files),
                "skipped": skipped,
                "parameters": sum(p.numel() for p in net.parameters()),
            }
        )
        log({"step": 0, "valid": validation_loss(ema_denoiser, valid, config)})
    sums, counts, losses, tic = np.zeros(LOSS_BINS), np.zeros(LOSS_BINS), [], time.perf_counter()
    for step in range(start, config.steps):
        # One step: crops and σ for this step, weighted denoising loss, clipped Adam update, EMA.
        net.train()
        x = crops.batch(step, config.batch_size)
        g = step_generator(config.seed, step, 0)
        sigma = training_sigmas(
            config.batch_size,
            config.sigma_distribution,
            config.sigma_min,
            config.sigma_max,
            config.rho,
            generator=g,
        )
        per_item = loss_fn(denoiser, x, sigma, generator=g)
        loss = per_item.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.step()
        update_ema(ema, net, ema_decay(config, step))

        # Bookkeeping: loss by σ bin, periodic log lines, validation and checkpoints.
        which = np.clip(np.searchsorted(edges, sigma.numpy()) - 1, 0, LOSS_BINS - 1)
        np.add.at(sums, which, per_item.detach().numpy())
        np.add.at(counts, which, 1)
        losses.append(loss.item())
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            elapsed = time.perf_counter() - tic
            log(
                {
                    "step": done,
                    "loss": float(np.mean(losses)),
                    "grad_norm": float(grad_norm),
                    "lr": learning_rate(config, step),
                    "it_per_s": len(losses) / elapsed,
                    "loss_by_sigma": {
                        f"{lo:.2g}-{hi:.2g}": (s / c if c else None)
                        for lo, hi, s, c in zip(edges[:-1], edges[1:], sums, counts, strict=True)
                    },
                }
            )
            sums[:], counts[:], losses, tic = 0, 0, [], time.perf_counter()
        if done % config.save_every == 0 or done == config.steps:
            ema.eval()
            log({"step": done, "valid": validation_loss(ema_denoiser, valid, config)})
            save_checkpoint(checkpoint_path, done, config, net, ema, optimizer)
            save_weights(out_dir / "ema.safetensors", ema, config.sigma_data, metadata={"step": str(done)})
            tic = time.perf_counter()
    return checkpoint_path


def valid_history(log_path: str | Path) -> list[dict]:
    """The validation records of a run's JSONL log, oldest first."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    return [r for r in records if "valid" in r]


def export_run(run_dir: str | Path, out_path: str | Path, half: bool = True) -> dict[str, str]:
    """Write a run's EMA weights as safetensors (fp16 by default) with the network config in metadata."""
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    config = TrainConfig.from_dict(json.loads(state["config"]))
    net = build_unet(resolve_config(config.preset))
    net.load_state_dict(state["ema"])
    metadata = {"step": str(state["step"]), "preset": config.preset, "train_config": state["config"]}
    save_weights(out_path, net, config.sigma_data, torch.float16 if half else None, metadata)
    return metadata
