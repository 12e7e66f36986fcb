"""Restoration speed per task and guidance mode: real-time factor and network evaluations per second.

For every preset, device, precision and batch size it restores batches of synthetic windows through the
library's own path, ``cqtrestore.pipeline.restore_segments`` (Heun sampler + DC/RG wrappers), for

- ``bwe``: ``LowPass`` at 3 kHz; modes dc, rg, dc+rg;
- ``declip``: ``Clip.from_sdr`` at 1 dB SDR; modes dc, rg, dc+rg (the consistent-declipping projection);
- ``inpaint``: a 200-ms ``Gap`` in the centre of every window; modes dc, rg, dc+rg.

Networks have random weights (seed 0): the time does not depend on the weights. ``small-shallow`` is the
network of the shipped default prior ``piano-small``. Each (preset, dtype, batch) is warmed up first (one
forward + backward and one forward, untimed), then each case runs ``--repeats`` times (1; the median run
is kept) with ``--steps`` T sampler steps.

What is measured, per case: the wall time of one ``restore_segments`` call on ``batch`` windows; the
denoiser's forward calls, counted with a hook (Heun: 2T - 1; RG and DC+RG back-propagate through each
one as well); seconds per evaluation (one batched call of the guided denoiser, sampler overhead included)
and window-evaluations per second (batch x evaluations / wall). FLOPs per evaluation come from
``torch.utils.flop_counter.FlopCounterMode`` on one window (batch 1) of the uncompiled denoiser: the
forward for dc, forward + backward with respect to the input for rg and dc+rg. It counts convolutions and
matrix products; FFTs (the CQT and the lowpass), element-wise work and the operators are not counted.
Achieved rate: GFLOP/s on CPU; on CUDA TFLOP/s and the fraction of the bf16 dense peak (``--peak-tflops``,
989 for an H100 SXM), whatever the precision of the row.

On a shared machine: each case also records this process's CPU time and the share of all cores that
other non-niced processes used meanwhile (from /proc/stat; niced jobs such as a background training run
are not counted), and ``--wait-quiet SECONDS`` holds each case until that share falls below 10 %.

Extrapolated (labelled so in the table): the real-time factor of 60 s of audio at T = 35, from the
measured seconds per evaluation at the same batch size, assuming every window needs restoring:

    windows = len(cqtrestore.audio.plan_windows(60 * 22050))   # 2^16-sample windows, overlap 8192: 23
    time    = ceil(windows / batch) * (2 * 35 - 1) * s_per_eval(batch)
    RTF     = time / 60 s

The passes around the sampler (resampling, windowing, crossfade, I/O) are not included. Only with
``--length 65536``. "s / window at T=35" is (2 * 35 - 1) * s_per_eval / batch, comparable with the
paper's 17 s (DC) and 84 s (DC+RG) per 2.97-s window.

    python bench/speed.py --tiny                                    # seconds: debug network, short windows
    python bench/speed.py --presets paper --batches 1 --steps 2 --json speed.json
    python bench/speed.py --presets small small-shallow --steps 3 --json speed.json --append
    python bench/speed.py --device cuda --dtypes fp32 bf16 --compile reduce-overhead   # on a GPU

Never bf16 on CPU: on AVX2 machines without native bf16 it is 30-80x slower than fp32 (rows skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from cqtrestore import audio
from cqtrestore.diffusion import SIGMA_DATA, Denoiser, SamplerOptions
from cqtrestore.guidance import MODES, GuidanceOptions
from cqtrestore.operators import Clip, Gap, LowPass, Operator
from cqtrestore.pipeline import WINDOW, restore_segments
from cqtrestore.unet import PRESETS, build_unet

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("bwe", "declip", "inpaint")
CUTOFF_HZ = 3000.0
CLIP_SDR_DB = 1.0
GAP_SECONDS = 0.2
TARGET_STEPS = 35
TARGET_SECONDS = 60.0
H100_BF16_TFLOPS = 989.0  # dense bf16, H100 SXM
CPU_BF16 = "skipped: bf16 on CPU is 30-80x slower than fp32 on AVX2 machines (no native bf16)"
OOM_NOTE = "out of memory"


@dataclass
class Row:
    """One case: its settings, what was measured, and the note of a case that did not run."""

    preset: str
    task: str
    mode: str
    device: str
    dtype: str
    compiled: str  # "" (eager) or the torch.compile mode
    batch: int
    steps: int
    length: int
    windows_60s: int = 0  # windows for TARGET_SECONDS of audio (0: extrapolation does not apply)
    forward_evals: int | None = None
    backward: bool = False
    wall_s: float | None = None
    cpu_s: float | None = None  # this process's CPU time, all threads
    others_cpu: float | None = None  # share of all cores that other non-niced processes used meanwhile
    runs_s: list[float] | None = None  # wall seconds of every repeat (the row holds the median one)
    gflop_per_eval: float | None = None  # one window (batch 1) of the guided evaluation
    peak_tflops: float | None = None  # CUDA only
    note: str = ""

    @property
    def s_per_eval(self) -> float | None:
        """Seconds per batched guided evaluation (sampler overhead included)."""
        return self.wall_s / self.forward_evals if self.wall_s and self.forward_evals else None

    @property
    def evals_per_s(self) -> float | None:
        """Window-evaluations per second."""
        return self.batch / self.s_per_eval if self.s_per_eval else None

    @property
    def gflops(self) -> float | None:
        """Achieved GFLOP/s (counted FLOPs only)."""
        return self.gflop_per_eval * self.evals_per_s if self.evals_per_s and self.gflop_per_eval else None

    @property
    def s_per_window_target(self) -> float | None:
        """Extrapolated seconds per window at T = 35."""
        return (2 * TARGET_STEPS - 1) * self.s_per_eval / self.batch if self.s_per_eval else None

    @property
    def rtf_target(self) -> float | None:
        """Extrapolated real-time factor for 60 s of audio at T = 35."""
        if not (self.s_per_eval and self.windows_60s):
            return None
        calls = math.ceil(self.windows_60s / self.batch)
        return calls * (2 * TARGET_STEPS - 1) * self.s_per_eval / TARGET_SECONDS

    def record(self) -> dict:
        """The row and its derived figures, for JSON."""
        derived = ("s_per_eval", "evals_per_s", "gflops", "s_per_window_target", "rtf_target")
        return asdict(self) | {name: getattr(self, name) for name in derived}


# --- inputs and operators ---------------------------------------------------------------------


def clean_audio(batch: int, length: int, sample_rate: int, seed: int = 0) -> Tensor:
    """Decaying chords plus a little noise at the training level σ_data, shape (batch, length)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sample_rate
    freqs = 110 * 2 ** (torch.randint(0, 48, (batch, 4), generator=generator) / 12)
    tones = torch.sin(2 * math.pi * freqs[..., None] * t).sum(1) * torch.exp(-t)
    x = tones + 0.05 * torch.randn(batch, length, generator=generator)
    return x * (SIGMA_DATA / x.std(dim=1, keepdim=True))


def degrade(task: str, x: Tensor, sample_rate: int) -> tuple[Operator, Tensor]:
    """The task's operator and the observation y = A(x)."""
    if task == "bwe":
        operator: Operator = LowPass(CUTOFF_HZ, sample_rate)
    elif task == "declip":
        operator = Clip.from_sdr(x, CLIP_SDR_DB)
    else:
        half, centre = round(GAP_SECONDS * sample_rate) // 2, x.shape[-1] // 2
        operator = Gap.from_samples([(centre - half, centre + half)], sample_rate)
    return operator, operator(x)


def applicable(mode: str, operator: Operator) -> bool:
    """Whether a mode with data consistency has the projection it needs."""
    return "dc" not in mode.split("+") or operator.has_projection


# --- the network --------------------------------------------------------------------------------


def build_denoiser(preset: str, device: str) -> Denoiser:
    """The preset's network, seed-0 random weights, wrapped in EDM preconditioning; no weight gradients."""
    torch.manual_seed(0)
    denoiser = Denoiser(build_unet(preset)).eval()
    denoiser.requires_grad_(False)
    if device == "cuda":
        denoiser = denoiser.to(device, memory_format=torch.channels_last)
    return denoiser


def guided_evaluation(denoiser: Denoiser, x: Tensor, backward: bool) -> Callable[[], Tensor]:
    """One denoiser call at σ = 0.5, with the input gradient of a squared error when ``backward``."""
    sigma = x.new_tensor(0.5)

    def call() -> Tensor:
        if not backward:
            with torch.no_grad():
                return denoiser(x, sigma)
        x_in = x.detach().requires_grad_(True)
        denoiser(x_in, sigma).float().pow(2).sum().backward()  # FlopCounterMode rejects autograd.grad
        return x_in.grad

    return call


def count_gflop(denoiser: Denoiser, length: int, device: str) -> dict[bool, float]:
    """GFLOP of one window's guided evaluation, {False: forward, True: forward + backward}."""
    x = clean_audio(1, length, denoiser.net.config.sample_rate).to(device)
    counts = {}
    for backward in (False, True):
        counter = FlopCounterMode(display=False)
        with counter:
            guided_evaluation(denoiser, x, backward)()
        counts[backward] = counter.get_total_flops() / 1e9
    return counts


def synchronize(device: str) -> None:
    """Wait for the GPU (no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, or nothing."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


# --- contention on a shared machine -----------------------------------------------------------


def busy_seconds() -> float | None:
    """CPU seconds used since boot by non-niced work (user + system in /proc/stat); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return (int(fields[1]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")


class Contention:
    """Wall time since construction and the share of all cores other non-niced processes used in it."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.perf_counter(), busy_seconds(), sum(os.times()[:2])

    def stop(self) -> tuple[float, float | None]:
        """(wall seconds, others' share of the cores in [0, 1], None when unknown)."""
        wall, busy = time.perf_counter() - self.wall, busy_seconds()
        if busy is None or self.busy is None:
            return wall, None
        others = busy - self.busy - (sum(os.times()[:2]) - self.own)
        return wall, min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)


def wait_for_quiet(limit_s: float, say: Callable[[str], None], threshold: float = 0.1) -> None:
    """Wait up to ``limit_s`` until other non-niced processes use less than ``threshold`` of the cores."""
    deadline, others = time.perf_counter() + limit_s, None
    while time.perf_counter() < deadline:
        meter = Contention()
        time.sleep(2)
        others = meter.stop()[1]
        if others is None or others < threshold:
            return
    if limit_s > 0:
        say(f"still busy after {limit_s:g} s (others use {100 * (others or 0):.0f} % of the cores): going on")


# --- one case ---------------------------------------------------------------------------------


def time_case(
    denoiser: Denoiser, operator: Operator, y: Tensor, mode: str, steps: int
) -> tuple[float, float, float | None, int]:
    """One restore_segments call: wall and CPU seconds, other processes' share of the cores meanwhile,
    and how many times it called the denoiser."""
    calls: list[int] = []
    hook = denoiser.register_forward_hook(lambda *_: calls.append(1))
    generator = torch.Generator(y.device).manual_seed(0)
    try:
        synchronize(y.device.type)
        meter, cpu_start = Contention(), time.process_time()
        restore_segments(
            denoiser,
            operator,
            y,
            guidance=GuidanceOptions(mode),
            sampler=SamplerOptions(steps=steps),
            generator=generator,
        )
        synchronize(y.device.type)
        wall, others = meter.stop()
        return wall, time.process_time() - cpu_start, others, len(calls)
    finally:
        hook.remove()


def run_case(row: Row, denoiser: Denoiser, operator: Operator, y: Tensor, repeats: int = 1) -> None:
    """Fill ``row`` with the run of median wall time out of ``repeats``, or with why it failed."""
    try:
        with precision(row.dtype):
            runs = [
                time_case(denoiser, operator, y.to(row.device), row.mode, row.steps) for _ in range(repeats)
            ]
        row.runs_s = [run[0] for run in runs]
        row.wall_s, row.cpu_s, row.others_cpu, row.forward_evals = sorted(runs)[(repeats - 1) // 2]
    except torch.OutOfMemoryError:
        row.note = OOM_NOTE
    except Exception as error:  # noqa: BLE001 (compile and kernel failures are recorded, not fatal)
        row.note = failure(error)
    if row.note == OOM_NOTE:
        torch.cuda.empty_cache()  # after the handler, once its traceback has let go of the tensors


def failure(error: Exception) -> str:
    """A one-line note for a failed case."""
    return f"fails: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:100]}"


def warm_up(denoiser: Denoiser, x: Tensor, dtype: str, failed: dict[bool, str]) -> dict[bool, str]:
    """Untimed evaluations (oneDNN primitives, allocator, compilation): forward + backward, then a
    forward in inference mode as DC runs it. Per kind (False: forward, True: with backward), why it
    fails ('' when it does not)."""
    notes = dict(failed)
    for backward in (True, False):
        if notes[backward]:
            continue
        try:
            with precision(dtype), torch.inference_mode(not backward):
                guided_evaluation(denoiser, x, backward)()
            synchronize(x.device.type)
        except torch.OutOfMemoryError:
            notes[backward] = f"{OOM_NOTE} (at this batch or a smaller one)"
        except Exception as error:  # noqa: BLE001
            return {False: failure(error), True: failure(error)}
        if notes[backward]:
            torch.cuda.empty_cache()
    return notes


# --- the sweep --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """What to run: everything but the preset and the device."""

    tasks: list[str]
    modes: list[str]
    batches: list[int]
    dtypes: list[str]
    steps: int
    length: int
    compile_mode: str
    peak_tflops: float
    wait_quiet: float = 0.0
    repeats: int = 1


def windows_for(seconds: float, sample_rate: int, length: int) -> int:
    """Windows the pipeline plans for ``seconds`` of audio (0 unless windows have WINDOW samples)."""
    return len(audio.plan_windows(round(seconds * sample_rate))) if length == WINDOW else 0


def run_preset(preset: str, device: str, sweep: Sweep, say: Callable[[str], None]) -> list[Row]:
    """Every (dtype, batch, task, mode) of one preset on one device."""
    denoiser = build_denoiser(preset, device)
    sample_rate = denoiser.net.config.sample_rate
    gflop = count_gflop(denoiser, sweep.length, device)  # not a warm-up: the counter changes dispatch
    say(f"{preset} on {device}: {gflop[False]:.1f} GFLOP forward, {gflop[True]:.1f} with backward")
    if sweep.compile_mode:
        denoiser.net = torch.compile(denoiser.net, mode=sweep.compile_mode)
    common = dict(preset=preset, device=device, compiled=sweep.compile_mode, steps=sweep.steps)
    common |= dict(length=sweep.length, windows_60s=windows_for(TARGET_SECONDS, sample_rate, sweep.length))
    if device == "cuda":
        common["peak_tflops"] = sweep.peak_tflops
    rows = []
    for dtype in sweep.dtypes:
        if device == "cpu" and dtype == "bf16":
            rows.append(Row(task="all", mode="all", dtype=dtype, batch=0, note=CPU_BF16, **common))
            continue
        # Per kind (False: forward, True: with backward): once it fails, larger batches are skipped.
        failed = {False: "", True: ""}
        for batch in sweep.batches:
            x = clean_audio(batch, sweep.length, sample_rate).to(device)
            failed = warm_up(denoiser, x, dtype, failed)
            for task in sweep.tasks:
                operator, y = degrade(task, x, sample_rate)
                for mode in (m for m in sweep.modes if applicable(m, operator)):
                    row = Row(task=task, mode=mode, dtype=dtype, batch=batch, **common)
                    row.backward = "rg" in mode.split("+")
                    row.gflop_per_eval = gflop[row.backward]
                    if failed[row.backward]:
                        row.note = failed[row.backward]
                    else:
                        wait_for_quiet(sweep.wait_quiet, say)
                        run_case(row, denoiser, operator, y, sweep.repeats)
                        failed[row.backward] = OOM_NOTE if row.note == OOM_NOTE else ""
                    rows.append(row)
                    say(summary(row))
    return rows


# --- reporting --------------------------------------------------------------------------------


def summary(row: Row) -> str:
    """One progress line."""
    head = f"{row.preset} {row.task} {row.mode} {row.device} {row.dtype} batch {row.batch}"
    if row.s_per_eval is None:
        return f"{head}: {row.note}"
    return f"{head}: {row.wall_s:.1f} s, {row.forward_evals} evals, {row.s_per_eval:.3f} s/eval"


def achieved(row: Row) -> str:
    """GFLOP/s on CPU; TFLOP/s and the fraction of the bf16 peak on CUDA."""
    if row.gflops is None:
        return "—"
    if row.peak_tflops:
        return f"{row.gflops / 1e3:.1f} TFLOP/s ({100 * row.gflops / 1e3 / row.peak_tflops:.1f} %)"
    return f"{row.gflops:.0f} GFLOP/s"


def percent(share: float | None) -> str:
    """A share as a whole percentage."""
    return "—" if share is None else f"{100 * share:.0f} %"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| preset | task | mode | device | dtype | batch | T | fwd evals | wall s | CPU s | others' CPU "
        "| s / eval | window-evals/s | GFLOP / eval | achieved "
        "| s / window at T=35 (extrap.) | RTF 60 s at T=35 (extrap.) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        dtype = r.dtype + (f" compiled ({r.compiled})" if r.compiled else "")
        cells = [r.preset, r.task, r.mode, r.device, dtype, str(r.batch or "—"), str(r.steps)]
        if r.s_per_eval is None:
            cells += ["—"] * 6 + [_fmt(r.gflop_per_eval, 1), r.note, "—", "—"]
        else:
            cells += [str(r.forward_evals), _fmt(r.wall_s, 1), _fmt(r.cpu_s, 1), percent(r.others_cpu)]
            cells += [_fmt(r.s_per_eval, 3), _fmt(r.evals_per_s)]
            cells += [_fmt(r.gflop_per_eval, 1), achieved(r), _fmt(r.s_per_window_target, 1)]
            cells += [_fmt(r.rtf_target, 2 if r.rtf_target and r.rtf_target < 10 else 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip()


def machine() -> dict:
    """Where and when the figures were taken."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_revision": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_in_cqtrestore": _git("status", "--porcelain", "--", "cqtrestore").splitlines(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nice": os.nice(0),
        "load_average_start": os.getloadavg(),
    }


def write_json(path: Path, info: dict, rows: list[Row], append: bool) -> list[Row]:
    """Write (or with ``append`` add to) the JSON record; return every row it now holds."""
    runs = json.loads(path.read_text())["runs"] if append and path.is_file() else []
    runs.append({"machine": info, "results": [row.record() for row in rows]})
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    names = {f.name for f in fields(Row)}
    return [Row(**{k: v for k, v in rec.items() if k in names}) for run in runs for rec in run["results"]]


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--presets",
        nargs="+",
        choices=sorted(PRESETS),
        default=["paper", "small", "small-shallow"],
        help="networks (small-shallow is piano-small's); default: paper small small-shallow",
    )
    add("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="degradations; default: all")
    add(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="guidance modes (those a task's operator cannot do are left out); default: all",
    )
    add("--batches", nargs="+", type=int, help="windows per call (default: CPU 1 2 4; CUDA 1 2 4 8 16 32)")
    add("--steps", type=int, default=3, help="sampler steps T of the measured runs (>= 2; default 3)")
    add(
        "--device",
        nargs="+",
        choices=("auto", "cpu", "cuda"),
        default=["auto"],
        help="auto: CUDA when present, else CPU; 'cpu cuda' runs both",
    )
    add(
        "--dtypes",
        nargs="+",
        choices=("fp32", "bf16"),
        default=["fp32", "bf16"],
        help="bf16 = CUDA autocast; on CPU its rows are reported as skipped",
    )
    add("--length", type=int, help="samples per window (2^16; --tiny: 8192)")
    add(
        "--compile",
        nargs="?",
        const="default",
        default="",
        metavar="MODE",
        help="torch.compile the network (MODE: default, reduce-overhead = CUDA graphs, max-autotune)",
    )
    add("--peak-tflops", type=float, default=H100_BF16_TFLOPS, help="GPU bf16 dense peak")
    add("--repeats", type=int, default=1, help="timed runs per case; the median one is reported")
    add(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each case wait up to SECONDS until other (non-niced) processes use < 10 %% of the cores",
    )
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add("--json", type=Path, help="also write the results and the machine here")
    add("--append", action="store_true", help="add to the --json file; print all its rows")
    add("--tiny", action="store_true", help="smoke run: debug network, 8192 samples, T=2")
    args = parser.parse_args(argv)
    if args.tiny:
        args.presets, args.steps, args.batches = ["debug"], 2, args.batches or [1]
    args.length = args.length or (8192 if args.tiny else WINDOW)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.batches and min(args.batches) < 1:
        parser.error("--batches must be >= 1")
    if "inpaint" in args.tasks and args.length <= round(GAP_SECONDS * 22050):
        parser.error(f"--length {args.length} leaves no room around the {GAP_SECONDS * 1e3:g}-ms gap")
    return args


def devices(requested: list[str]) -> list[str]:
    """'auto' -> CUDA when present, else CPU; duplicates removed."""
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = list(dict.fromkeys(auto if d == "auto" else d for d in requested))
    if "cuda" in chosen and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return chosen


def main(argv: list[str] | None = None) -> list[Row]:
    """Run the sweep, print the table, write the JSON; return the rows of this run."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = ["python", "bench/speed.py", *(sys.argv[1:] if argv is None else argv)]
    info = machine() | {"command": shlex.join(command)}
    say = lambda line: print(f"# {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"speed benchmark: {info}")
    rows = []
    for device in devices(args.device):
        batches = args.batches or ([1, 2, 4, 8, 16, 32] if device == "cuda" else [1, 2, 4])
        sweep = Sweep(
            args.tasks, args.modes, batches, args.dtypes, args.steps, args.length, args.compile,
            args.peak_tflops, args.wait_quiet, args.repeats,
        )  # fmt: skip
        for preset in args.presets:
            rows += run_preset(preset, device, sweep, say)
    info["load_average_end"] = os.getloadavg()
    shown = write_json(args.json, info, rows, args.append) if args.json else rows
    print(markdown(shown if args.append else rows))
    if not torch.cuda.is_available():
        print("\nNo CUDA device: GPU rows were not measured.")
    return rows


if __name__ == "__main__":
    main()
