"""Run the evaluations behind docs/results.md for a shipped checkpoint and write the page.

CPU-sized protocol subset (the full one is `cqtrestore eval`'s defaults): bandwidth extension at 1 and
3 kHz (DC), inpainting of 200-ms gaps (DC+RG against LPC), declipping at 1 dB SDR (RG and DC+RG
against A-SPADE), on SEGMENTS 2.97-s segments of each data folder (the corpus valid split and its
held-out timbre), with the restore commands' default --quality preset. Each evaluation caches per item
under runs/eval/CHECKPOINT-QUALITY/SPLIT/TASK, so an interrupted run resumes.

    python scripts/results.py                                  # piano-small, balanced, 8 segments
    python scripts/results.py --data data/piano/valid data/piano/heldout
    python scripts/results.py --segments 2 --tasks bwe         # a quick look
    python scripts/results.py --metrics lsd si-sdr sdr-gain   # without the [metrics] extra
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    "bwe": ["--cutoff", "1000", "--cutoff", "3000", "--method", "degraded", "--method", "noise-fill",
            "--method", "cqt-diff-dc"],
    "inpaint": ["--gap", "0.2", "--method", "degraded", "--method", "lpc", "--method", "cqt-diff-dc+rg"],
    "declip": ["--sdr", "1", "--method", "degraded", "--method", "a-spade", "--method", "cqt-diff-rg",
               "--method", "cqt-diff-dc+rg"],
}  # fmt: skip


def evaluate(task: str, data: Path, args: argparse.Namespace, out: Path) -> tuple[str, float]:
    """Run one ``cqtrestore eval``; (its command line, wall seconds)."""
    command = [sys.executable, "-m", "cqtrestore", "eval", str(data), "--task", task, *TASKS[task]]
    command += ["--segments", str(args.segments), "--quality", args.quality, "--checkpoint", args.checkpoint]
    if args.steps is not None:
        command += ["--steps", str(args.steps)]
    command += ["--batch-size", "1", "--device", "cpu", "--out", str(out.relative_to(ROOT)), "--quiet"]
    for metric in args.metrics:
        command += ["--metric", metric]
    began = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return " ".join(["cqtrestore", *command[3:]]), time.perf_counter() - began


def describe(name: str) -> str:
    """The registry's description of a checkpoint name (empty for paths and URLs)."""
    from cqtrestore.checkpoints import get_entry

    try:
        return f" ({get_entry(name).description})"
    except ValueError:
        return ""


def page(args: argparse.Namespace, runs: dict[Path, dict[str, tuple[str, float]]], out: Path) -> str:
    """docs/results.md: how it was made, then each split's and task's tables (headings moved down)."""
    git = ["git", "rev-parse", "--short", "HEAD"]
    revision = subprocess.run(git, capture_output=True, text=True, cwd=ROOT)
    lines = [
        "# Results on the corpus valid split" + (" and the held-out timbre\n" if len(runs) > 1 else "\n"),
        f"Checkpoint `{args.checkpoint}`{describe(args.checkpoint)}, "
        f"{args.segments} segments of 2.97 s per condition from "
        + ", ".join(f"`{data}`" for data in runs)
        + f", `--quality {args.quality}`{'' if args.steps is None else f' with {args.steps} steps'}, seed 0, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, git `{revision.stdout.strip()}`, 2-core CPU. "
        "Metrics and baselines are defined in `docs/evaluation.md` (LSD: STFT 2048/512 Hann, log10 power, "
        "floor 1e-10; lower is better; SI-SDR and SDR gain in dB, higher is better); cells are mean ± 95% "
        "confidence interval. Made by `python scripts/results.py`; CPU-sized subset of the paper's "
        "protocols (the full grid is `cqtrestore eval`'s defaults).\n",
    ]
    deeper = "#" if len(runs) > 1 else ""
    for data, tasks in runs.items():
        if deeper:
            lines.append(f"## {data.name}\n")
        for task, (command, seconds) in tasks.items():
            took = f"{seconds / 60:.0f} min of wall-clock, items cached by an earlier run not counted"
            lines.append(f"{deeper}## {task}\n\n`{command}` ({took})\n")
            body = (out / data.name / task / "results.md").read_text().splitlines()
            lines += [deeper + "#" + line if line.startswith("#") else line for line in body[1:]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("data/piano/valid")])
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--quality", default="balanced", choices=["fast", "balanced", "best"])
    parser.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["lsd", "si-sdr", "sdr-gain", "visqol", "note-f1"],
        help="cqtrestore eval --metric values (visqol and note-f1 need the [metrics] extra)",
    )
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    out = ROOT / "runs" / "eval" / f"{args.checkpoint}-{args.quality}"
    runs = {
        data: {task: evaluate(task, data, args, out / data.name / task) for task in args.tasks}
        for data in args.data
    }
    args.page.write_text(page(args, runs, out))
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
