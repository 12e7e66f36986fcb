"""The training loop: EDM loss on random crops, Adam, EMA, resumable checkpoints, JSONL logs.

Read it top to bottom in ``train``. Everything random in a step (crops, σ, noise) is a function of
(seed, step), so ``--resume`` continues exactly as the uninterrupted run would have. Under ``torchrun``
the loop runs DistributedDataParallel: every rank draws the whole batch's σ and noise and takes its share
of it, so N ranks compute the single-process step of the same global batch; only rank 0 writes.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.distributed as dist

from cqtrestore.augment import Augmentation
from cqtrestore.checkpoints import atomic_write, save_weights
from cqtrestore.data import (
    SPECTRUM_STATISTICS,
    RandomCrops,
    crop_batches,
    estimate_spectrum,
    fixed_crops,
    scan_audio,
    split_files,
)
from cqtrestore.diffusion import SIGMA_DATA, Denoiser, SamplerOptions, sample_heun, training_sigmas
from cqtrestore.unet import build_unet, grows_from, load_grown, min_length, resolve_config

VALID_SIGMAS = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0)
LOSS_BINS = 8  # log-spaced σ bins of the training-loss log
SIGMA_DISTRIBUTIONS = ("rho", "lognormal")
PRECONDITIONINGS = ("scalar", "spectral")
WIDEN_JITTER = 1e-2  # noise on a widened level's copied channels (--init from a narrower layout)
LOSSES = ("spectral", "local")  # λ per frequency (paper eq. 6); and per time-frequency cell as well
SPECTRUM_CROPS = 1024  # training crops whose average power spectrum a spectral run measures
BWE_CUTOFF_HZ = 3000.0  # the lowpass of the bandwidth-extension sample
BF16_ON_CPU = "--bf16 needs a CUDA GPU: on these AVX2 CPUs bf16 training is 30-80x slower than float32"


class TrainError(ValueError):
    """A run that cannot start here (no GPU for bf16, a batch that does not split over the processes)."""


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
    p_mean: float = -1.2  # log-normal σ: ln σ ~ N(p_mean, p_std²)
    p_std: float = 1.2
    # a share of each batch's σ log-uniform in [focus_min, focus_max] instead: the range where the
    # restore presets sample (warm starts at σ ≤ 0.2), trained more often than the wide distribution does
    focus_share: float = 0.0
    focus_min: float = 1e-4
    focus_max: float = 0.3
    sigma_data: float = SIGMA_DATA
    precondition: str = "scalar"  # "spectral": σ_data² -> the training data's power spectrum P(f)
    # "local": the λ-weighted error also weighted by how quiet the noisy input is in each cell
    # (Denoiser.local_weighted_error; still minimised by the posterior mean). Validation stays "spectral".
    loss: str = "spectral"
    spectrum_statistic: str = "mean"  # "root": P(f) nearer a typical frame's power (data.estimate_spectrum)
    # the loss weight λ per frequency from the spectrum of this statistic ("": the preconditioning's own);
    # measured from the crops at every start (deterministic), not stored. Validation keeps λ of P.
    loss_statistic: str = ""
    edge_taper: int = 0  # samples of raised-cosine fade-in/out on every crop (0: none)
    gain_db: float = 3.0
    augment: bool = False  # random microphone and room on every training crop (cqtrestore.augment)
    seed: int = 0
    valid_fraction: float = 0.05
    valid_crops: int = 16
    log_every: int = 50
    save_every: int = 500
    threads: int = 0  # 0: torch's default
    workers: int = 0  # data-loading processes (0: crops read in the training process)
    bf16: bool = False  # CUDA only: bfloat16 autocast
    compile: bool = False  # torch.compile the network
    sample_every: int = 0  # steps between samples written to samples/ (0: never)
    sample_steps: int = 35  # sampler steps of those samples

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
        if self.sigma_distribution not in SIGMA_DISTRIBUTIONS:
            raise ValueError(
                f"unknown sigma distribution {self.sigma_distribution!r}: use 'rho' or 'lognormal'"
            )
        if not 0 <= self.focus_share <= 1:
            raise ValueError(f"focus_share must be from 0 to 1, got {self.focus_share}")
        if self.focus_share and not self.sigma_min <= self.focus_min < self.focus_max <= self.sigma_max:
            raise ValueError(
                "need sigma_min <= focus_min < focus_max <= sigma_max, "
                f"got {self.focus_min}, {self.focus_max}"
            )
        if self.precondition not in PRECONDITIONINGS:
            raise ValueError(f"unknown preconditioning {self.precondition!r}: use 'scalar' or 'spectral'")
        if self.loss not in LOSSES or (self.loss == "local" and self.precondition != "spectral"):
            raise ValueError(f"loss must be one of {LOSSES} ('local' needs spectral preconditioning)")
        if self.spectrum_statistic not in SPECTRUM_STATISTICS:
            raise ValueError(f"spectrum_statistic must be one of {SPECTRUM_STATISTICS}")
        if self.loss_statistic and (
            self.loss_statistic not in SPECTRUM_STATISTICS or self.precondition != "spectral"
        ):
            raise ValueError(
                f"loss_statistic must be one of {SPECTRUM_STATISTICS} (spectral preconditioning only)"
            )
        if self.loss_statistic and self.loss == "local":
            raise ValueError("loss_statistic goes with the spectral loss, not with 'local'")
        if not self.p_std > 0:
            raise ValueError(f"p_std must be positive, got {self.p_std}")
        if not 0 <= self.edge_taper <= self.segment // 4:
            raise ValueError(f"edge_taper must be from 0 to a quarter of the segment, got {self.edge_taper}")
        for name in ("workers", "sample_every", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.sample_steps < 2:
            raise ValueError(f"sample_steps must be at least 2, got {self.sample_steps}")

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


class ThreadControl:
    """The CPU threads of a running job, changed from outside by writing a number into a file (OUT/threads):
    a background run can give a core back while other work needs it, and take it again afterwards."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, None

    def poll(self) -> int | None:
        """The new thread count, once per change of the file (now in force), or None."""
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if stamp == self.seen:
            return None
        self.seen = stamp
        try:
            threads = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        if threads < 1:
            return None
        torch.set_num_threads(threads)
        return threads


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


@dataclass(frozen=True)
class Ranks:
    """This process's place in a (torchrun) group: rank, world size, and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """The items of a global batch that this rank computes."""
        size = batch_size // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def start_ranks(config: TrainConfig) -> Ranks:
    """Join the torchrun group when its environment is set (NCCL on CUDA, gloo on CPU); pick the device."""
    world, rank, local = (
        int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0))
    )
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if config.bf16 and device.type != "cuda":
        raise TrainError(BF16_ON_CPU)
    if config.batch_size % world:
        raise TrainError(f"batch size {config.batch_size} does not split evenly over {world} processes")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Ranks(rank, world, device)


def step_noise(config: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch's σ (batch,) and unit noise (batch, segment) of one step, drawn on the CPU."""
    g = step_generator(config.seed, step, 0)
    sigma = training_sigmas(
        config.batch_size,
        config.sigma_distribution,
        config.sigma_min,
        config.sigma_max,
        config.rho,
        config.p_mean,
        config.p_std,
        generator=g,
        focus=(config.focus_min, config.focus_max),
        focus_share=config.focus_share,
    )
    return sigma, torch.randn((config.batch_size, config.segment), generator=g)


def weighted_loss(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    loss: str = "spectral",
    loss_spectrum: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-item λ(σ)·mean (D(x + σn, σ) − x)², with the noise n given (so ranks can share one draw);
    ``loss="local"``: weighted per time-frequency cell as well (``Denoiser.local_weighted_error``);
    ``loss_spectrum``: λ from that spectrum instead of the preconditioning's."""
    if loss == "local":
        return denoiser.local_weighted_error(x, sigma.to(x), noise.to(x))
    return denoiser.weighted_error(x, sigma.to(x), noise.to(x), loss_spectrum)


def gather(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Every rank's share of a per-item tensor, concatenated in batch order, on the CPU."""
    values = values.detach()
    if ranks.world > 1:
        parts = [torch.empty_like(values) for _ in range(ranks.world)]
        dist.all_gather(parts, values)
        values = torch.cat(parts)
    return values.cpu()


@torch.no_grad()
def validation_loss(
    denoiser: Denoiser, crops: torch.Tensor, config: TrainConfig, batch: int = 8
) -> dict[str, float]:
    """λ-weighted loss of ``denoiser`` on fixed crops at each σ of ``VALID_SIGMAS`` (fixed noise)."""
    result = {}
    device = next(denoiser.parameters()).device
    for i, sigma in enumerate(VALID_SIGMAS):
        values = []
        for start in range(0, len(crops), batch):
            x = crops[start : start + batch]
            noise = torch.randn(x.shape, generator=step_generator(config.seed, 2**40 + start, i))
            sigmas = torch.full((len(x),), sigma)
            values.append(weighted_loss(denoiser, x.to(device), sigmas, noise).cpu())
        result[f"{sigma:g}"] = torch.cat(values).mean().item()
    return result


@torch.no_grad()
def write_samples(folder: Path, denoiser: Denoiser, clean: torch.Tensor, config: TrainConfig) -> list[Path]:
    """An unconditional sample and a 3 kHz bandwidth extension of ``clean`` (one crop), as FLAC + PNG."""
    from cqtrestore.guidance import GuidanceOptions
    from cqtrestore.operators import LowPass
    from cqtrestore.pipeline import restore_segments
    from cqtrestore.plot import plot_comparison

    device, rate = next(denoiser.parameters()).device, denoiser.net.config.sample_rate
    options = SamplerOptions(steps=config.sample_steps)
    g = torch.Generator(device).manual_seed(config.seed)
    noise = torch.randn((1, clean.shape[-1]), generator=g, device=device) * options.sigma_max
    unconditional = sample_heun(denoiser, noise, options.sigmas().to(device), generator=g, **options.churn())
    lowpass = LowPass(BWE_CUTOFF_HZ, rate)
    x = clean.reshape(1, -1).to(device)
    y = lowpass(x)
    restored = restore_segments(denoiser, lowpass, y, GuidanceOptions("dc"), options, g)
    audio = {
        name: t.reshape(-1).float().cpu().numpy()
        for name, t in {
            "unconditional": unconditional,
            "bwe-input": y,
            "bwe-restored": restored,
            "bwe-clean": x,
        }.items()
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, samples in audio.items():
        sf.write(folder / f"{name}.flac", np.clip(samples, -1, 1), rate)
    plot_comparison(folder / "unconditional.png", [("unconditional sample", audio["unconditional"], rate)])
    panels = [
        (title, audio[name], rate)
        for title, name in (
            ("clean", "bwe-clean"),
            ("lowpassed 3 kHz", "bwe-input"),
            ("restored", "bwe-restored"),
        )
    ]
    plot_comparison(folder / "bwe.png", panels, cutoff_hz=BWE_CUTOFF_HZ)
    return sorted(folder.iterdir())


def edge_taper(segment: int, taper: int) -> torch.Tensor:
    """(segment,) gains: raised-cosine fade-in and fade-out of ``taper`` samples, 1 between.

    Fading the crops' ends removes the jump between their last and first sample, whose broadband
    leakage would otherwise dominate the quiet top octaves of the (circular) spectral loss."""
    gains = torch.ones(segment)
    if taper:
        ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(taper) + 0.5) / taper)
        gains[:taper], gains[segment - taper :] = ramp, ramp.flip(0)
    return gains


def loss_bins(config: TrainConfig) -> np.ndarray:
    """Edges of the log-spaced σ bins used to report training loss by noise level."""
    return np.geomspace(config.sigma_min, config.sigma_max, LOSS_BINS + 1)


def save_checkpoint(
    path: Path, step: int, config: TrainConfig, net, ema, optimizer, spectrum: torch.Tensor | None = None
) -> None:
    """Model, EMA, optimizer, step, config (and a spectral run's data spectrum) in one file, atomically."""
    state = {
        "step": step,
        "config": json.dumps(asdict(config)),
        "model": net.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    if spectrum is not None:
        state["spectrum"] = spectrum
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by ``save_checkpoint`` (tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def initialise_from(
    spec: str | Path, net: torch.nn.Module, ema: torch.nn.Module, config: TrainConfig
) -> tuple[torch.Tensor | None, dict]:
    """Load a trained prior's weights into ``net`` and ``ema``; its data spectrum (spectral runs) and
    where it came from (preset, step) for the log."""
    from cqtrestore.checkpoints import CheckpointError
    from cqtrestore.checkpoints import load_checkpoint as load_prior

    try:
        prior, info = load_prior(spec, progress=False)
    except (CheckpointError, OSError, ValueError) as error:
        raise TrainError(f"--init {spec}: {error}") from None
    wanted = resolve_config(config.preset)
    # Only the transform's window floor differs (``UNetConfig.min_window_hz``): the same weights load.
    retuned = replace(prior.config, min_window_hz=wanted.min_window_hz) == wanted
    grown = not retuned and grows_from(prior.config, wanted)
    if not (retuned or grown):
        raise TrainError(
            f"--init {spec}: its network ({info.preset}) is not this run's preset {config.preset!r}"
        )
    if (info.data_spectrum is not None) != (config.precondition == "spectral"):
        kind = "spectral" if info.data_spectrum is not None else "scalar"
        raise TrainError(f"--init {spec}: a {kind}-preconditioned prior, this run is {config.precondition}")
    state = prior.state_dict()
    if grown:  # new gates start as the identity, a widened level as copied channels: the same function
        load_grown(net, state, prior.config, WIDEN_JITTER, config.seed)
        ema.load_state_dict(net.state_dict())
    else:
        net.load_state_dict(state)
        ema.load_state_dict(state)
    spectrum = None if info.data_spectrum is None else torch.tensor(info.data_spectrum, dtype=torch.float32)
    step = read_step(info.path)
    return spectrum, {"init_preset": info.preset, **({"init_step": step} if step is not None else {})}


def read_step(path: Path) -> int | None:
    """The training steps behind a weights file, if its metadata says: ``total_step`` (its run's own
    steps plus those of the weights that run started from), else the run's ``step``."""
    from cqtrestore.checkpoints import CheckpointError, read_metadata

    try:
        metadata = read_metadata(path)
    except CheckpointError:
        return None
    step = metadata.get("total_step", metadata.get("step"))
    return int(step) if step is not None and step.isdigit() else None


def _init_step(run_dir: Path) -> int:
    """The steps behind the weights a run started from (``--init``; its first start record), else 0."""
    log = run_dir / "log.jsonl"
    if not log.exists():
        return 0
    lines = log.read_text().splitlines()
    first = json.loads(lines[0]) if lines and lines[0].strip() else {}
    return int(first.get("init_step", 0)) if first.get("event") == "start" else 0


LogFn = Callable[[dict], None]


def train(
    config: TrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    on_log: LogFn | None = None,
    valid_dir: str | Path | None = None,
    heldout_dir: str | Path | None = None,
    init: str | Path | None = None,
) -> Path:
    """Train a network on the audio under ``data_dir``; returns the checkpoint path in ``out_dir``.

    ``heldout_dir``: a second validation set (say, a timbre never trained on), logged as "heldout".
    ``init``: a new run starts from these weights (a checkpoint name or file of the same layout) and,
    when spectral, their data spectrum; a resumed run ignores it."""
    out_dir = Path(out_dir)
    checkpoint_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    ranks = start_ranks(config)
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
    augment = Augmentation() if config.augment else None
    crops = RandomCrops(
        train_files, config.segment, net_config.sample_rate, config.seed, config.gain_db, augment=augment
    )
    valid = fixed_crops(
        valid_files or train_files, config.segment, net_config.sample_rate, config.valid_crops, config.seed
    )
    taper = edge_taper(config.segment, config.edge_taper)
    valid = valid * taper
    heldout = None
    if heldout_dir is not None:
        heldout_files = scan_audio(heldout_dir)[0]
        rate, count = net_config.sample_rate, config.valid_crops
        heldout = fixed_crops(heldout_files, config.segment, rate, count, config.seed) * taper

    # Model, EMA copy, optimizer; continue from the checkpoint when resuming.
    torch.manual_seed(config.seed)
    net = initialise(build_unet(net_config)).to(ranks.device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    start, spectrum, init_meta = 0, None, {}
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=ranks.device, weights_only=True)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start, spectrum = int(state["step"]), state.get("spectrum")
    elif not resume and checkpoint_path.exists():
        raise FileExistsError(f"{checkpoint_path} exists: resume it or choose another output folder")
    elif init is not None:
        spectrum, init_meta = initialise_from(init, net, ema, config)
    if config.precondition == "spectral" and spectrum is None:
        bins = min(513, 2 ** int(np.log2(config.segment)) // 2 + 1)
        statistic = config.spectrum_statistic
        spectrum = torch.from_numpy(estimate_spectrum(crops, SPECTRUM_CROPS, bins, statistic=statistic))
    loss_spectrum = None
    if config.loss_statistic:  # also when it names P's own statistic: P may come from --init weights
        bins = len(spectrum)
        estimate = estimate_spectrum(crops, SPECTRUM_CROPS, bins, statistic=config.loss_statistic)
        loss_spectrum = torch.from_numpy(estimate).to(ranks.device)

    # The network as trained: channels-last on CUDA, DDP-wrapped, compiled (the EMA stays plain).
    model = net.to(memory_format=torch.channels_last) if ranks.device.type == "cuda" else net
    if ranks.world > 1:
        device_ids = [ranks.device] if ranks.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    model = torch.compile(model) if config.compile else model
    denoiser = Denoiser(model, config.sigma_data, spectrum)
    ema_denoiser = Denoiser(ema, config.sigma_data, spectrum)
    edges, mine = loss_bins(config), ranks.share(config.batch_size)
    batches = crop_batches(crops, start, config.steps, mine.stop - mine.start, mine.start, config.workers)
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    def log(record: dict) -> None:
        if not ranks.main:
            return
        with log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if on_log is not None:
            on_log(record)

    if start == 0 and ranks.main:
        log(
            {
                "event": "start",
                "train_files": len(train_files),
                "valid_files": len(valid_files),
                "skipped": skipped,
                "parameters": sum(p.numel() for p in net.parameters()),
                "processes": ranks.world,
                **({"init": str(init), **init_meta} if init is not None else {}),
            }
        )
        log({"step": 0, "valid": validation_loss(ema_denoiser, valid, config)})
        if heldout is not None:
            log({"step": 0, "heldout": validation_loss(ema_denoiser, heldout, config)})
    sums, counts, losses, tic = np.zeros(LOSS_BINS), np.zeros(LOSS_BINS), [], time.perf_counter()
    control = ThreadControl(out_dir / "threads")
    for step, x in zip(range(start, config.steps), batches, strict=True):
        threads = control.poll()
        if threads is not None:
            log({"step": step, "threads": threads})
        # One step: this rank's share of the crops, σ and noise; weighted denoising loss (DDP averages the
        # gradients over ranks), clipped Adam update, EMA.
        model.train()
        sigma, noise = step_noise(config, step)
        with torch.autocast(ranks.device.type, torch.bfloat16, enabled=config.bf16):
            batch = (x * taper).to(ranks.device)
            per_item = weighted_loss(denoiser, batch, sigma[mine], noise[mine], config.loss, loss_spectrum)
        optimizer.zero_grad(set_to_none=True)
        per_item.mean().backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.step()
        update_ema(ema, net, ema_decay(config, step))

        # Bookkeeping (rank 0): loss by σ bin over the whole batch, log lines, validation, checkpoints,
        # samples.
        per_item = gather(per_item, ranks)
        which = np.clip(np.searchsorted(edges, sigma.numpy()) - 1, 0, LOSS_BINS - 1)
        np.add.at(sums, which, per_item.numpy())
        np.add.at(counts, which, 1)
        losses.append(per_item.mean().item())
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
        if ranks.main and (done % config.save_every == 0 or done == config.steps):
            ema.eval()
            log({"step": done, "valid": validation_loss(ema_denoiser, valid, config)})
            if heldout is not None:
                log({"step": done, "heldout": validation_loss(ema_denoiser, heldout, config)})
            save_checkpoint(checkpoint_path, done, config, net, ema, optimizer, spectrum)
            save_weights(
                out_dir / "ema.safetensors",
                ema,
                config.sigma_data,
                metadata={"step": str(done), "total_step": str(done + _init_step(out_dir))},
                spectrum=spectrum,
            )
            tic = time.perf_counter()
        if ranks.main and config.sample_every and done % config.sample_every == 0:
            ema.eval()
            write_samples(out_dir / "samples" / f"step-{done:07d}", ema_denoiser, valid[0], config)
            tic = time.perf_counter()
    if ranks.world > 1:
        dist.barrier()
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
    metadata["total_step"] = str(state["step"] + _init_step(Path(run_dir)))
    dtype = torch.float16 if half else None
    save_weights(out_path, net, config.sigma_data, dtype, metadata, spectrum=state.get("spectrum"))
    return metadata
