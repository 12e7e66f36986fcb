"""Files per hour and real-time factor of whole-folder restoration (issue 7).

Two folders (20 short files, 2 long ones), each restored three ways on each device:

* ``batched``:  one ``cqtrestore bwe FOLDER -o OUT --batch-size B`` process: the prior loaded once, windows
  of different files sharing batches of B items (window x channel);
* ``folder-1``: the same folder command with ``--batch-size 1`` (one item at a time);
* ``per-file``: one ``cqtrestore bwe FILE --batch-size B`` process per file (what a shell loop does: files
  never share a batch, and each pays start-up and model loading).

Real-time factor = wall time / audio time (below 1: faster than real time). Sampling time is linear in
the steps T (2T - 1 network evaluations per window), so figures at a small T scale to T = 35.

    python bench/collection.py --tiny                                  # smoke run: 3 x 1 s + 1 x 4 s, T=2
    python bench/collection.py --steps 35 --json collection.json       # the full figures (GPU)
    python bench/collection.py --short 20 2 --long 2 20 --steps 6 --batch 4 --json c.json   # CPU-sized

Inputs are piano-like synthetic notes at 44.1 kHz, 16-bit stereo, lowpassed at 3 kHz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100


def notes(seconds: float, seed: int) -> np.ndarray:
    """Decaying harmonic notes, lowpassed at 3 kHz, stereo, RMS about 0.06."""
    import torch

    from cqtrestore.operators import LowPass

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    mono = np.zeros(t.size)
    for onset in np.arange(0, seconds, 0.5):
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        envelope = np.where(t >= onset, np.exp(-(t - onset) * 3), 0.0)
        mono += sum(envelope * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    mono = LowPass(3000, RATE)(torch.from_numpy(mono[None]))[0].numpy()
    mono *= 0.06 / max(np.sqrt(np.mean(mono**2)), 1e-9)
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


def make_folder(folder: Path, count: int, seconds: float) -> float:
    """``count`` files of ``seconds`` each; returns the total audio seconds."""
    folder.mkdir(parents=True)
    for index in range(count):
        sf.write(folder / f"take{index:02d}.wav", notes(seconds, index), RATE, subtype="PCM_16")
    return count * seconds


def cli(*args: str, threads: int) -> float:
    """Run ``python -m cqtrestore ARGS``; wall seconds (raises if it fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cqtrestore", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - began


def measure(folder: Path, out: Path, how: str, common: list[str], batch: int, threads: int) -> float:
    """Wall seconds to restore every file of ``folder`` into ``out`` one way or another."""
    if how == "batched":
        return cli("bwe", str(folder), "-o", str(out), *common, "--batch-size", str(batch), threads=threads)
    if how == "folder-1":
        return cli("bwe", str(folder), "-o", str(out), *common, "--batch-size", "1", threads=threads)
    out.mkdir()
    return sum(
        cli(
            "bwe", str(path), "-o", str(out / path.name), *common, "--batch-size", str(batch), threads=threads
        )
        for path in sorted(folder.glob("*.wav"))
    )


def git_revision() -> str:
    """The checkout's short revision (empty outside git)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="3 x 1 s and 1 x 4 s files, T=2 (a smoke run)")
    parser.add_argument("--short", type=float, nargs=2, default=[20, 10.0], help="count and seconds")
    parser.add_argument("--long", type=float, nargs=2, default=[2, 300.0], help="count and seconds")
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--checkpoint", default="piano-small")
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: all present)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="items per batch (default: 4 CPU, 16 CUDA)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.tiny:
        args.short, args.long, args.steps = [3, 1.0], [1, 4.0], 2
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as name:
        for label, (count, seconds) in (("short", args.short), ("long", args.long)):
            folder = Path(name) / label
            audio_seconds = make_folder(folder, int(count), seconds)
            for device in devices:
                common = ["--cutoff", "3k", "--checkpoint", args.checkpoint, "--steps", str(args.steps)]
                common += ["--device", device, "--quiet", "--seed", "0"]
                batch = args.batch or (16 if device == "cuda" else 4)
                for how in ("batched", "folder-1", "per-file"):
                    out = Path(name) / f"{label}-{device}-{how}"
                    wall = measure(folder, out, how, common, batch, args.threads)
                    row = {"folder": label, "files": int(count), "seconds_each": seconds, "device": device,
                           "how": how, "batch": 1 if how == "folder-1" else batch, "steps": args.steps,
                           "wall_s": round(wall, 2),
                           "files_per_hour": round(count * 3600 / wall, 1),
                           "real_time_factor": round(wall / audio_seconds, 3)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        report = {
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
            },
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "command": " ".join(sys.argv),
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
