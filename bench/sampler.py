"""Seconds per 2.97-s window and quality, per task, for sampler settings side by side in one run.

    python bench/sampler.py --data data/piano/valid --segments 8 --json docs/bench-sampler.json
    python bench/sampler.py --segments 2 --tasks bwe3k --grid dpmpp2m:8:0.3 dpmpp2m:12:0.1 heun:6:none

Each task (``bwe3k``, ``bwe1k``, ``declip1db``, ``inpaint200ms``: the evaluation's protocols, from
``cqtrestore.evaluate``) is degraded on the same valid segments and restored by every setting:
``default`` (the sampler before the presets: stochastic Heun, T = 35, S_churn = 5, from noise), the
``--quality`` presets ``fast``, ``balanced`` and ``best``, and any ``--grid`` entries
``SOLVER:STEPS:SIGMA0[:RG_SIGMA_MIN][:rho=R][:smin=S][:dc=DC_SIGMA_MIN]`` (SIGMA0 ``none``: from noise;
the task's default guidance mode; ρ 13 and σ_min 1e-4 unless given). One window at a time through
``Restorer.restore_windows`` — the CLI's path, the warm start's classical estimate included in the
time — with denormals flushed as the CLI does. Scores: LSD and SI-SDR on the segment (inside the gap
± 50 ms for inpainting), mean ± 95 % CI over segments, with the degraded input and the classical
baseline beside them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from cqtrestore.baselines import noise_fill_bwe
from cqtrestore.checkpoints import load_checkpoint
from cqtrestore.diffusion import SamplerOptions
from cqtrestore.evaluate import load_segments, mean_ci, operators_for, score
from cqtrestore.guidance import default_guidance
from cqtrestore.operators import LowPass
from cqtrestore.pipeline import Restorer, restore_average
from cqtrestore.quality import QUALITIES, Plan, resolve
from cqtrestore.warmstart import classical_estimate

TASKS = {"bwe3k": ("bwe", 3000.0), "bwe1k": ("bwe", 1000.0), "declip1db": ("declip", 1.0)}
TASKS["inpaint200ms"] = ("inpaint", 0.2)
BASELINE = {"bwe": "noise fill", "declip": "A-SPADE", "inpaint": "LPC"}


def grid_plan(entry: str, operator) -> Plan:  # noqa: ANN001
    """A ``SOLVER:STEPS:SIGMA0[:RG_SIGMA_MIN][:rho=R][:smin=S][:dc=DC_SIGMA_MIN][:draws=K]`` entry as a
    plan."""
    solver, steps, start, *rest = entry.split(":")
    named = dict(part.split("=", 1) for part in rest if "=" in part)
    positional = [part for part in rest if "=" not in part]
    if set(named) - {"rho", "smin", "dc", "draws"} or len(positional) > 1:
        raise SystemExit(
            f"bad grid entry {entry!r}: "
            "SOLVER:STEPS:SIGMA0[:RG_SIGMA_MIN][:rho=R][:smin=S][:dc=DC_SIGMA_MIN][:draws=K]"
        )
    warm = start != "none"
    sampler = SamplerOptions(
        steps=int(steps),
        sigma_min=float(named.get("smin", SamplerOptions.sigma_min)),
        sigma_max=float(start) if warm else 1.0,
        rho=float(named.get("rho", SamplerOptions.rho)),
        s_churn=0.0,
        solver=solver,
    )
    rg_sigma_min = float(positional[0]) if positional else 0.0
    guidance = replace(
        default_guidance(operator), rg_sigma_min=rg_sigma_min, dc_sigma_min=float(named.get("dc", 0.0))
    )
    return Plan(sampler, guidance, warm, int(named.get("draws", 1)))


def baseline_estimate(operator, y: torch.Tensor, seed: int) -> torch.Tensor:  # noqa: ANN001
    """The classical baseline of the task: the noise fill for a lowpass (whose warm start is the input
    itself), else the warm start's own estimate (LPC, A-SPADE)."""
    if isinstance(operator, LowPass):
        return noise_fill_bwe(y, operator, torch.Generator().manual_seed(seed))
    return classical_estimate(operator, y)


def plans_for(operator, grid: list[str], qualities: list[str], default: bool = True) -> dict[str, Plan]:  # noqa: ANN001
    """Today's default, the presets (those equal to it named with it, not run twice), the grid entries."""
    old = Plan(SamplerOptions(), default_guidance(operator), False)
    plans = {"default": old} if default else {}
    for quality in qualities:
        plan = resolve(quality, operator)
        if plan == old and default:
            plans[f"default = quality={quality}"] = plans.pop("default")
        else:
            plans[f"quality={quality}"] = plan
    plans.update({entry: grid_plan(entry, operator) for entry in grid})
    return plans


def summarise(rows: list[dict]) -> dict:
    """Mean ± CI of every score and of the seconds per window."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    return {k: mean_ci([r[k] for r in rows]) for k in keys}


def run_task(
    restorer: Restorer,
    name: str,
    clean: torch.Tensor,
    grid: list[str],
    qualities: list[str],
    seed: int,
    default: bool = True,
) -> dict:
    """Every plan on every segment of one task: per-plan summaries and the baselines'."""
    task, value = TASKS[name]
    operators = operators_for(task, value, clean, seed)
    observed = [op(x[None].float()) for op, x in zip(operators, clean, strict=True)]
    results = {}
    rows = {"degraded": [], BASELINE[task]: []}
    estimates = []  # each segment's classical estimate and its seconds, computed once for every warm start
    for op, x, y in zip(operators, clean, observed, strict=True):
        began = time.perf_counter()
        estimate = classical_estimate(op, y)
        estimates.append((estimate, time.perf_counter() - began))
        rows["degraded"] += score(x[None], y.double(), y.double(), [op])
        began = time.perf_counter()
        baseline = baseline_estimate(op, y, seed + len(estimates) - 1)
        scored = score(x[None], y.double(), baseline.double(), [op])
        rows[BASELINE[task]] += [dict(row, seconds=time.perf_counter() - began) for row in scored]
    for label, plan_rows in rows.items():
        results[label] = {"summary": summarise(plan_rows)}
    for label, plan in plans_for(operators[0], grid, qualities, default).items():
        plan_rows = []
        for index, (op, x, y) in enumerate(zip(operators, clean, observed, strict=True)):
            plan = plans_for(op, grid, qualities, default)[label]
            start, seconds = estimates[index] if plan.warm_start else (None, 0.0)
            generator = [torch.Generator().manual_seed(seed + index)]
            began = time.perf_counter()  # the window as Restorer.restore_windows restores it
            out = restore_average(
                restorer.denoiser, op, y, plan.guidance, plan.sampler, generator, start, plan.draws
            )
            seconds += time.perf_counter() - began
            plan_rows += [
                dict(row, seconds=seconds) for row in score(x[None], y.double(), out.double(), [op])
            ]
        results[label] = {
            "evaluations": plan.evaluations,
            "sampler": asdict(plan.sampler),
            "guidance": asdict(plan.guidance),
            "warm_start": plan.warm_start,
            "summary": summarise(plan_rows),
        }
        summary = results[label]["summary"]
        print(
            f"{name:13s} {label:28s} {plan.evaluations:3d} evals {summary['seconds'][0]:6.1f} s/window  "
            + "  ".join(f"{k} {v[0]:.3f}±{v[1]:.3f}" for k, v in summary.items() if k != "seconds"),
            flush=True,
        )
    return results


def markdown(report: dict) -> str:
    """The table for docs/benchmarks.md: task x setting, evaluations, s/window, LSD and SI-SDR with CIs."""
    lines = [
        "| task | setting | evaluations | s / window | LSD | SI-SDR (dB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, results in report["tasks"].items():
        prefix = "gap_" if task.startswith("inpaint") else ""
        for label, result in results.items():
            s = result["summary"]
            seconds = f"{s['seconds'][0]:.1f}" if "seconds" in s else "—"
            lines.append(
                f"| {task} | {label} | {result.get('evaluations', '—')} | {seconds} | "
                f"{_cell(s, prefix + 'lsd')} | {_cell(s, prefix + 'si_sdr')} |"
            )
    return "\n".join(lines)


def _cell(summary: dict, key: str) -> str:
    return f"{summary[key][0]:.3f} ± {summary[key][1]:.3f}" if key in summary else "—"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--data", type=Path, default=Path("data/piano/valid"))
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        help="extra settings SOLVER:STEPS:SIGMA0[:RG_SIGMA_MIN][:rho=R][:smin=S][:dc=DC_SIGMA_MIN]",
    )
    parser.add_argument("--qualities", nargs="*", default=list(QUALITIES), choices=list(QUALITIES))
    parser.add_argument("--skip-default", action="store_true", help="exploring: leave the old default out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
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
        "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "tasks": {},
    }
    for name in args.tasks:
        report["tasks"][name] = run_task(
            restorer, name, clean, args.grid, args.qualities, args.seed, not args.skip_default
        )
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
