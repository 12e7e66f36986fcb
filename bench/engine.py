"""Engine benchmark: milliseconds per evaluation of the network F (paper §2.4) per preset.

For every preset in ``cqtrestore.unet.PRESETS`` except ``debug`` it times windows of 2**16 samples:
forward only (sampling) and forward + backward with respect to the input (reconstruction guidance),
on CPU in fp32 and, when CUDA is present, in fp32 and bf16 (autocast), eager and ``torch.compile``.
The reference network (github.com/eloimoliner/CQTdiff, exported to ``.ref/CQTdiff``, see
bench/README.md) runs side by side on the same CPU in the same run, with the same weights and inputs,
and the paper preset's outputs are compared with it. GFLOP per evaluation come from
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; FFTs are not counted).

    python bench/engine.py --quick            # batch 1 and 4, a few minutes on a 2-core CPU
    python bench/engine.py --full --json engine.json   # batch 1, 4 and 16
    python bench/engine.py --profile          # adds torch.profiler's top ops for one paper forward

Never bf16 on CPU: on AVX2 machines without native bf16 it is 30-80x slower than fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
REF_DIR = ROOT / ".ref" / "CQTdiff"
REF_STUBS = ROOT / ".ref" / "stubs"
SIGMA = 0.5  # noise level of the inputs: c_noise = ln(sigma) / 4
SIGMA_DATA = 0.057
PEAK_OVER_SAVED = 1.3  # peak RSS of forward+backward over bytes autograd saves: 1.03-1.12 measured


@dataclass
class Result:
    """One timed configuration: times are per call of ``batch`` windows."""

    network: str  # preset name
    impl: str  # "cqtrestore" or "reference"
    device: str
    precision: str  # "fp32" or "bf16"
    compiled: bool
    mode: str  # "forward" or "forward+backward"
    batch: int
    times_ms: list[float] = field(default_factory=list)
    gflop: float | None = None  # per call
    memory_gb: float | None = None  # the warm-up's peak above the starting usage (see warm_up_and_count)
    note: str = ""

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None


# --- inputs and weights -----------------------------------------------------------------------


def deterministic_weights(model: nn.Module) -> dict[str, Tensor]:
    """The fixtures' deterministic weights: trained entry k (state-dict order) = scale * sin(0.37 i + k).

    Fixed entries (random-Fourier tables, resampler kernels) keep the model's values.
    """
    trained = {name for name, _ in model.named_parameters()}
    state = model.state_dict()
    for k, (name, value) in enumerate(state.items()):
        if name in trained:
            i = np.arange(value.numel(), dtype=np.float64)
            scale = 1 / math.sqrt(value.numel() / value.shape[0]) if value.dim() >= 2 else 0.1
            state[name] = torch.from_numpy((scale * np.sin(0.37 * i + k)).reshape(value.shape)).float()
    return state


def make_inputs(batch: int, length: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Noisy audio-like input c_in * (tones + sigma * noise) and c_noise = ln(sigma) / 4, shape (batch, 1)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 22050
    freqs = 110 * 2 ** (torch.randint(0, 48, (batch, 4), generator=generator) / 12)
    tones = 0.05 * torch.sin(2 * math.pi * freqs[..., None] * t).sum(1) * torch.exp(-2 * t)
    noisy = tones + SIGMA * torch.randn(batch, length, generator=generator)
    c_in = 1 / math.sqrt(SIGMA**2 + SIGMA_DATA**2)
    return (c_in * noisy).float(), torch.full((batch, 1), math.log(SIGMA) / 4)


# --- the reference network --------------------------------------------------------------------


class SincResample(nn.Module):
    """torchaudio.transforms.Resample's semantics (sinc_interp_hann, width 6, rolloff 0.99).

    Used only when neither torchaudio nor the stub package in ``.ref/stubs`` can be imported.
    """

    def __init__(self, orig_freq: float, new_freq: float) -> None:
        super().__init__()
        from cqtrestore.unet import sinc_resample_kernel

        gcd = math.gcd(int(orig_freq), int(new_freq))
        self.orig, self.new = int(orig_freq) // gcd, int(new_freq) // gcd
        self.register_buffer("kernel", sinc_resample_kernel(self.orig, self.new))
        self.width = (self.kernel.shape[-1] - self.orig) // 2

    def forward(self, waveform: Tensor) -> Tensor:
        shape, length = waveform.shape, waveform.shape[-1]
        flat = F.pad(waveform.reshape(-1, 1, length), (self.width, self.width + self.orig))
        out = F.conv1d(flat, self.kernel, stride=self.orig).transpose(1, 2).reshape(flat.shape[0], -1)
        return out[..., : math.ceil(self.new * length / self.orig)].reshape(*shape[:-1], -1)


def _provide_torchaudio() -> str:
    """Make ``import torchaudio`` work for the reference: real package, .ref/stubs, or SincResample."""
    with contextlib.suppress(ImportError):
        import torchaudio  # noqa: F401

        return "torchaudio"
    if (REF_STUBS / "torchaudio").is_dir():
        sys.path.insert(0, str(REF_STUBS))
        return "stub package .ref/stubs/torchaudio"
    module = types.ModuleType("torchaudio")
    module.transforms = types.SimpleNamespace(Resample=SincResample)
    sys.modules["torchaudio"] = module
    return "bench/engine.py SincResample"


def load_reference(length: int) -> tuple[nn.Module | None, str]:
    """The reference ``Unet_CQT`` for ``length``-sample windows, or None and the reason."""
    if not (REF_DIR / "src" / "models" / "unet_cqt.py").is_file():
        return None, f"{REF_DIR.relative_to(ROOT)} not found: reference skipped (see bench/README.md)"
    resampler = _provide_torchaudio()
    sys.path.insert(0, str(REF_DIR))
    import src.utils  # the reference's namespace package; its logging module needs plotly and pandas

    logging_stub = types.ModuleType("src.utils.logging")
    sys.modules["src.utils.logging"], src.utils.logging = logging_stub, logging_stub
    from src.models.unet_cqt import Unet_CQT

    ns = types.SimpleNamespace
    args = ns(cqt=ns(binsoct=64, numocts=7, use_norm=False), sample_rate=22050, audio_len=length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Q-factor too high" for the lowest bins, as in the paper setup
        return Unet_CQT(args, "cpu").eval(), f"resampler: {resampler}"


# --- timing -----------------------------------------------------------------------------------


def evaluation(model: nn.Module, x: Tensor, c_noise: Tensor, mode: str, autocast) -> Callable[[], Tensor]:
    """One network evaluation as a closure. forward+backward differentiates w.r.t. the input only."""
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(x.device)

    def forward() -> Tensor:
        with torch.no_grad(), autocast():
            return model(x, c_noise)

    def forward_backward() -> Tensor:
        x_in = x.detach().requires_grad_(True)
        with autocast():
            out = model(x_in, c_noise)
        out.float().backward(grad_out)
        return x_in.grad

    return forward if mode == "forward" else forward_backward


def warm_up_and_count(call: Callable[[], Tensor], device: str) -> tuple[Tensor, float, int]:
    """The warm-up call under FlopCounterMode: its output, GFLOP, and the memory it needed in bytes.

    The memory is the larger of the measured peak above the starting usage and PEAK_OVER_SAVED times
    the bytes autograd saved for backward (the peak alone can hide in memory the allocator kept).
    """
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    counter, base = FlopCounterMode(display=False), reset_peak_memory(device)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = call()
    synchronize(device)
    needed = max(peak_memory(device) - base, int(PEAK_OVER_SAVED * sum(storages.values())))
    return out, counter.get_total_flops() / 1e9, needed


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _proc_status_bytes(key: str) -> int:
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{key}:"))


def reset_peak_memory(device: str) -> int:
    """Reset the peak-memory counter (CUDA's, or Linux's VmHWM); return the memory in use now."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    return _proc_status_bytes("VmRSS")


def peak_memory(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else _proc_status_bytes("VmHWM")


def memory_available(device: str) -> int:
    """Free bytes: CUDA's free memory, or the kernel's MemAvailable estimate."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))


def time_interleaved(
    calls: dict[str, Callable[[], Tensor]], repeats: int, device: str
) -> dict[str, list[float]]:
    """Milliseconds per call, the calls taking turns so that load drift hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            synchronize(device)
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def relative_error(ours: Tensor, reference: Tensor) -> float:
    return ((ours - reference).norm() / reference.norm()).item()


# --- configurations ---------------------------------------------------------------------------


@dataclass
class Settings:
    presets: list[str]
    batches: list[int]
    length: int
    repeats: int
    reference: nn.Module | None
    reference_note: str
    comparison: dict = field(default_factory=dict)
    checkpoint_blocks: bool = False
    memory_per_window: dict = field(default_factory=dict)  # forward+backward bytes per (preset, variant)


def device_variants() -> list[tuple[str, str, bool]]:
    """(device, precision, compiled): CPU fp32 always; CUDA fp32/bf16, eager and compiled, when present."""
    variants = [("cpu", "fp32", False)]
    if torch.cuda.is_available():
        variants += [("cuda", p, c) for c in (False, True) for p in ("fp32", "bf16")]
    return variants


def prepare(preset: str, device: str, compiled: bool, checkpoint_blocks: bool = False) -> nn.Module:
    """The preset with deterministic weights, channels-last on CUDA, optionally compiled."""
    from cqtrestore.unet import build_unet

    torch.manual_seed(0)
    model = build_unet(preset).eval()
    if checkpoint_blocks and not hasattr(model, "checkpoint_blocks"):
        raise SystemExit("--checkpoint-blocks: this cqtrestore.unet has no checkpoint_blocks switch")
    if hasattr(model, "checkpoint_blocks"):
        model.checkpoint_blocks = checkpoint_blocks
    model.load_state_dict(deterministic_weights(model))
    model.requires_grad_(False)  # guidance differentiates w.r.t. the input, not the weights
    if device == "cuda":
        model = model.to(device, memory_format=torch.channels_last)
    return torch.compile(model) if compiled else model


def memory_guard(settings: Settings, preset: str, variant, mode: str, batch: int) -> str:
    """Why a forward+backward would not fit in memory ('' when it would), from the smaller batch's record."""
    per_window = settings.memory_per_window.get((preset, variant))
    if mode == "forward" or per_window is None:
        return ""
    need, free = batch * per_window, memory_available(variant[0])
    if need < 0.9 * free:
        return ""
    return (
        f"skipped: needs ≈ {need / 1e9:.0f} GB ({per_window / 1e9:.1f} GB a window), {free / 1e9:.0f} GB free"
    )


def run_group(settings: Settings, preset: str, variant, mode: str, batch: int) -> list[Result]:
    """Time one (preset, device, precision, mode, batch), with the reference beside paper on CPU."""
    device, precision, compiled = variant
    too_big = memory_guard(settings, preset, variant, mode, batch)
    if too_big:
        return [Result(preset, "cqtrestore", device, precision, compiled, mode, batch, note=too_big)]
    model = prepare(preset, device, compiled, settings.checkpoint_blocks)
    x, c_noise = (t.to(device) for t in make_inputs(batch, settings.length))
    bf16 = precision == "bf16"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    results = {"cqtrestore": Result(preset, "cqtrestore", device, precision, compiled, mode, batch)}
    calls = {"cqtrestore": evaluation(model, x, c_noise, mode, autocast)}
    outputs = {"cqtrestore": None}
    reference = settings.reference if (preset, device) == ("paper", "cpu") else None
    if mode != "forward" and batch != settings.batches[0]:
        reference = None  # its backward fails on torch 2.x: shown once, at the smallest batch
    if reference is not None:
        reference.load_state_dict(model.state_dict(), strict=True)
        results["reference"] = Result(preset, "reference", device, precision, compiled, mode, batch)
        calls["reference"] = evaluation(reference, x, c_noise, mode, autocast)
    for name in list(calls):
        try:
            outputs[name], results[name].gflop, needed = warm_up_and_count(calls[name], device)
            results[name].memory_gb = needed / 1e9
            if name == "cqtrestore" and mode != "forward":
                settings.memory_per_window[(preset, variant)] = needed / batch
        except RuntimeError as error:  # the reference's backward fails on torch 2.x
            results[name].note = f"fails: {str(error).splitlines()[0][:90]}"
            del calls[name]
    for name, times in time_interleaved(calls, settings.repeats, device).items():
        results[name].times_ms = times
    if mode == "forward" and outputs.get("reference") is not None:
        compare(settings, batch, outputs["cqtrestore"], outputs["reference"])
    return list(results.values())


def compare(settings: Settings, batch: int, ours: Tensor, reference: Tensor) -> None:
    settings.comparison[f"batch {batch}"] = {
        "relative_error": relative_error(ours, reference),
        "max_abs_diff": (ours - reference).abs().max().item(),
        "max_abs_reference": reference.abs().max().item(),
    }


def groups(settings: Settings, modes: list[str]) -> list[tuple]:
    """Every (preset, variant, mode, batch) to run."""
    return [
        (preset, variant, mode, batch)
        for preset in settings.presets
        for variant in device_variants()
        for mode in modes
        for batch in settings.batches
    ]


# --- reporting --------------------------------------------------------------------------------


def markdown_table(results: list[Result], windows_note: str) -> str:
    header = (
        "| network | impl | device | precision | mode | batch | ms / eval (median) | ms / window "
        "| GFLOP / eval | GFLOP/s | peak GB | runs (ms) |\n"
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [header]
    for r in results:
        precision = r.precision + (" compiled" if r.compiled else "")
        if r.median_ms is None:
            cells = ["—", "—", _fmt(r.gflop), "—", _fmt(r.memory_gb), r.note or "skipped"]
        else:
            rate = r.gflop / (r.median_ms / 1e3) if r.gflop else None
            runs = ", ".join(f"{t:.0f}" for t in r.times_ms)
            per_window = f"{r.median_ms / r.batch:.0f}"
            cells = [f"{r.median_ms:.0f}", per_window, _fmt(r.gflop), _fmt(rate), _fmt(r.memory_gb), runs]
        cells = [r.network, r.impl, r.device, precision, r.mode, str(r.batch), *cells]
        rows.append("| " + " | ".join(cells) + " |")
    notes = "peak GB: the warm-up call's peak memory above what was in use before it (forward+backward: "
    notes += "at least 1.3x the bytes autograd saved)."
    return "\n".join(rows) + f"\n\n{windows_note} {notes}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def speedups(results: list[Result]) -> list[str]:
    """Paper-preset CPU forward: reference time / ours, per batch."""
    lines = []
    timed = {
        (r.impl, r.batch): r.median_ms
        for r in results
        if r.network == "paper" and r.device == "cpu" and r.mode == "forward" and r.median_ms
    }
    for (impl, batch), ours in sorted(timed.items()):
        reference = timed.get(("reference", batch))
        if impl == "cqtrestore" and reference:
            lines.append(
                f"paper, CPU fp32 forward, batch {batch}: reference {reference / batch / 1e3:.2f} s "
                f"per window, ours {ours / batch / 1e3:.2f} s: speed-up {reference / ours:.2f}x"
            )
    return lines


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    changes = subprocess.run(
        ["git", "status", "--porcelain", "--", "cqtrestore"], cwd=ROOT, capture_output=True, text=True
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_revision": revision.stdout.strip(),
        "uncommitted_in_cqtrestore": changes.stdout.splitlines(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_start": os.getloadavg(),
    }


def profile_forward(length: int, rows: int = 15) -> str:
    """torch.profiler's top ops by self CPU time for one paper forward, batch 1 (after a warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    model = prepare("paper", "cpu", compiled=False)
    x, c_noise = make_inputs(1, length)
    call = evaluation(model, x, c_noise, "forward", contextlib.nullcontext)
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="batch 1 and 4 (the default)")
    size.add_argument(
        "--full", action="store_true", help="batch 1, 4 and 16 (paper at 16 on CPU: minutes per call)"
    )
    parser.add_argument("--presets", nargs="+", help="presets to time (default: all but 'debug')")
    parser.add_argument("--batches", nargs="+", type=int, help="override the batch sizes")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["forward", "forward+backward"],
        choices=["forward", "forward+backward"],
        help="what one evaluation is",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per configuration (median reported)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--length", type=int, default=2**16, help="samples per window")
    parser.add_argument(
        "--checkpoint-blocks",
        action="store_true",
        help="recompute each residual block in backward (less memory)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the reference network")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one paper forward")
    parser.add_argument("--json", type=Path, help="also write the results and machine info here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from cqtrestore.unet import PRESETS

    presets = args.presets or [name for name in PRESETS if name != "debug"]
    reference, note = None, "reference skipped (--no-reference)"
    if not args.no_reference:
        reference, note = load_reference(args.length)
    batches = args.batches or ([1, 4, 16] if args.full else [1, 4])
    settings = Settings(
        presets, batches, args.length, args.repeats, reference, note, checkpoint_blocks=args.checkpoint_blocks
    )
    info = machine()
    print(f"# engine benchmark: {info}\n# {note}", file=sys.stderr)
    if not torch.cuda.is_available():
        print(
            "# no CUDA: the CUDA fp32/bf16, channels-last and torch.compile rows are skipped", file=sys.stderr
        )
    results = []
    for group in groups(settings, args.modes):
        results += run_group(settings, *group)
        print(f"# done {group}: {[r.median_ms for r in results[-2:]]}", file=sys.stderr)
    info["load_average_end"] = os.getloadavg()
    windows = f"Windows of {args.length} samples; times per call of `batch` windows; {args.threads} threads"
    windows += "; residual blocks checkpointed in backward." if args.checkpoint_blocks else "."
    print(markdown_table(results, windows))
    comparisons = [f"outputs vs reference, {k}: {v}" for k, v in settings.comparison.items()]
    for line in speedups(results) + comparisons:
        print(f"\n{line}")
    print(f"\nmachine: {info}")
    if args.profile:
        print("\n" + profile_forward(args.length))
    if args.json:
        record = {
            "machine": info,
            "args": sys.argv[1:],
            "reference": note,
            "comparison": settings.comparison,
            "results": [asdict(r) | {"median_ms": r.median_ms} for r in results],
        }
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
